#!/bin/sh
# Sample job: counts through a few steps, reporting progress in the
# fraction_done file, and writes its result to output.txt (with the input
# file input.txt appended, when the workunit has one). Arguments: the number
# of steps (default 10) and the exit code to end with (default 0).
steps=${1:-10}
status=${2:-0}
echo "hello from the container: $steps steps, arguments: $*"
i=0
while [ "$i" -lt "$steps" ]; do
    i=$((i + 1))
    echo "step $i of $steps"
    echo "$i $steps" | awk '{ printf "%.3f\n", $1 / $2 }' > fraction_done
    sleep 1
done
echo "done after $steps steps" > output.txt
if [ -f input.txt ]; then
    cat input.txt >> output.txt
fi
echo "result written to output.txt"
exit "$status"
