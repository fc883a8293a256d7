#!/bin/sh
# The BUDA test app: busy for the given number of seconds (default 20) in
# one process, so its CPU time should come out close to its run time; then
# copies its input "in" to its output "out".
seconds=${1:-20}
start=$(date +%s)
end=$((start + seconds))
rounds=0
while [ "$(date +%s)" -lt "$end" ]; do
    i=0
    while [ "$i" -lt 20000 ]; do i=$((i + 1)); done
    rounds=$((rounds + 1))
    echo "$(($(date +%s) - start)) $seconds" | awk '{ printf "%.3f\n", $1 / $2 }' > fraction_done
done
echo "spun $rounds rounds in $seconds s" > out
cat in >> out
