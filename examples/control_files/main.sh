#!/bin/sh
# Sample job that runs like a service: it works through a few steps,
# touching its heartbeat, checkpointing, sending a progress report as a
# trickle-up message, then says it is done through its completion file and
# keeps running until the wrapper stops it.
# As PID 1 of its container, the shell ignores SIGTERM unless told: this
# lets the wrapper's stop end it at once instead of after the grace period.
trap 'exit 0' TERM
steps=${1:-6}
i=0
if [ -f checkpoint ]; then i=$(cat checkpoint); fi
while [ "$i" -lt "$steps" ]; do
    i=$((i + 1))
    echo "step $i of $steps"
    touch heartbeat
    echo "$i $steps" | awk '{ printf "%.3f\n", $1 / $2 }' > fraction_done
    echo "$i" > checkpoint
    if [ "$i" -eq $((steps / 2)) ]; then
        echo "<step>$i</step><of>$steps</of>" > progress_report
    fi
    sleep 1
done
echo "done after $steps steps" > output.txt
# Exit code, notice flag (0: event log only), message for the volunteer.
printf '0\n0\nall %s steps done\n' "$steps" > boinc_completed
while :; do touch heartbeat; sleep 5 & wait; done
