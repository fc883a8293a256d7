#!/bin/sh
# Sample job: counts through a few steps, reporting progress in the
# fraction_done file, and writes its result to output.txt.
steps=${1:-10}
echo "hello from the container: $steps steps, arguments: $*"
i=0
while [ "$i" -lt "$steps" ]; do
    i=$((i + 1))
    echo "step $i of $steps"
    echo "$i $steps" | awk '{ printf "%.3f\n", $1 / $2 }' > fraction_done
    sleep 1
done
echo "done after $steps steps" > output.txt
echo "result written to output.txt"
