#!/bin/sh
# The BUDA test app: keeps one process busy until it has used the given
# number of CPU seconds (default 20), as its own /proc/PID/stat counts them,
# so its CPU time is known whatever else the host runs; then writes that
# count and its input "in" to its output "out".
seconds=${1:-20}
ticks_wanted=$((seconds * 100))
used=0
while [ "$used" -lt "$ticks_wanted" ]; do
    i=0
    while [ "$i" -lt 20000 ]; do i=$((i + 1)); done
    # utime and stime, fields 14 and 15, in clock ticks (100 a second).
    read -r stat < /proc/$$/stat
    set -- ${stat#*) }
    used=$((${12} + ${13}))
    echo "$used $ticks_wanted" | awk '{ printf "%.3f\n", $1 / $2 }' > fraction_done
done
echo "cpu_ticks $used" > out
cat in >> out
