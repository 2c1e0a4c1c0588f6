"""W8 peer: cotyledon keeping one worker alive. The worker execs the same w8_worker binary
every supervisor in W8 runs (argv[1]), which reports its start on $W8_FIFO."""
import os
import sys

import cotyledon


class Worker(cotyledon.Service):
    def run(self):
        os.execv(sys.argv[1], [sys.argv[1]])


if __name__ == "__main__":
    manager = cotyledon.ServiceManager()
    manager.add(Worker, workers=1)
    manager.run()
