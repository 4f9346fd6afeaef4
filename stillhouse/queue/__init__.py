"""The only place with SQL for the queues: one method per state change.

Every state change is one transaction whose UPDATE is conditional on the row still being
held (same lease owner, same attempt, still active); losing that race raises LeaseLost
instead of writing twice. Outcome rows carry a unique `outcome:<job id>` key, so even a
bug above this layer cannot deliver two results for one job.
"""

from stillhouse.queue.delivery import SendQueue
from stillhouse.queue.generation import GenerationQueue

__all__ = ["GenerationQueue", "SendQueue"]
