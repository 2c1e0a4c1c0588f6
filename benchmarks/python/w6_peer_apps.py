"""The W6/W7 tasks for Celery, Dramatiq and RQ (imported by their workers and by
w6_peers.py). The broker URL comes from W6_REDIS_URL; W6_PEER says which framework to set
up, so each worker imports only its own."""

import os
import time

URL = os.environ.get("W6_REDIS_URL", "redis://127.0.0.1:6379")
PEER = os.environ.get("W6_PEER", "")


def tiny_fn(x):
    return x + 1


def sleep_fn(x):
    time.sleep(0.001)
    return x


if PEER.startswith("celery"):
    from celery import Celery

    app = Celery("w6", broker=URL, backend=URL)
    late = PEER == "celery-acks-late"
    app.conf.update(
        task_acks_late=late,
        task_reject_on_worker_lost=late,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    tiny = app.task(name="tiny")(tiny_fn)
    sleepy = app.task(name="sleepy")(sleep_fn)

if PEER == "dramatiq":
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.results import Results
    from dramatiq.results.backends import RedisBackend

    broker = RedisBroker(url=URL)
    broker.add_middleware(Results(backend=RedisBackend(url=URL)))
    dramatiq.set_broker(broker)
    tiny = dramatiq.actor(store_results=True, max_retries=0)(tiny_fn)
    sleepy = dramatiq.actor(store_results=True, max_retries=0)(sleep_fn)
