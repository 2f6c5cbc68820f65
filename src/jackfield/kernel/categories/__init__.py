"""Category interfaces. Every category module has the same shape: DTOs, then the
provider base class with its abstract primitives and the ``operations()`` map that
``deliver`` uses."""

from .email import EmailMessage, EmailProvider, SendResult
from .http import HttpProvider, HttpRequest, HttpResponse
from .messaging import MessagingProvider, OutboundMessage, SentMessage
from .queue import QueueProvider
from .storage import ObjectInfo, StorageProvider

CATEGORY_BASES = {
    "storage": StorageProvider,
    "email": EmailProvider,
    "messaging": MessagingProvider,
    "queue": QueueProvider,
    "http": HttpProvider,
}

__all__ = [
    "CATEGORY_BASES",
    "EmailMessage",
    "EmailProvider",
    "HttpProvider",
    "HttpRequest",
    "HttpResponse",
    "MessagingProvider",
    "ObjectInfo",
    "OutboundMessage",
    "QueueProvider",
    "SendResult",
    "SentMessage",
    "StorageProvider",
]
