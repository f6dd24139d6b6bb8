"""`makeusrich up`: the whole system on one machine, from the same pair files that go to a cluster.

runner     the supervisor: the servers as child processes, the pair files scanned, trainings started
schedule   when a pair's next training is due (the CronJob's schedule, read the same way)
training   a training run as the runner watches it: its log lines, and how it ended
cli        `makeusrich up`
"""

from makeusrich.local.cli import add_up_command

__all__ = ["add_up_command"]
