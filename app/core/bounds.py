"""Every bound a client meets, defined once: the schemas, the routes' parameters, the tables
and the error messages all read them from here.
"""

from __future__ import annotations

# Ids are PostgreSQL BIGINTs: a larger number can name nothing (and must not reach the
# driver, which would refuse it with an error rather than find nothing).
MAX_ID = 2**63 - 1
# Versions (and so entity tags), and an account's token version (an access token's `tv`),
# are PostgreSQL INTEGERs.
MAX_VERSION = 2**31 - 1

# Text of a task.
TITLE_MAX_LENGTH = 200  # after trimming
DESCRIPTION_MAX_LENGTH = 10_000
SEARCH_MAX_LENGTH = 200  # the listing's `q`

# Accounts (the contract, section 2; NIST SP 800-63B-4 for passwords).
EMAIL_MAX_LENGTH = 254
# RFC 5321 (4.5.3.1.1): the longest local part (before the @) a mail server must accept; new
# addresses only (an account registered before the rule can still log in).
EMAIL_LOCAL_PART_MAX_LENGTH = 64
FULL_NAME_MAX_LENGTH = 200
PASSWORD_MIN_LENGTH = 15
PASSWORD_MAX_LENGTH = 128  # characters, after NFKC

# Tokens a client sends back (ours are 43 characters; longer is never one of ours).
REFRESH_TOKEN_MAX_LENGTH = 512

# v2: projects, labels, comments (spec api-v2 sections 3, 5 and 6).
PROJECT_NAME_MAX_LENGTH = 100  # after trimming
PROJECT_DESCRIPTION_MAX_LENGTH = 10_000
LABEL_NAME_MAX_LENGTH = 50  # after trimming
COMMENT_BODY_MAX_LENGTH = 10_000
TASK_ASSIGNEES_MAX = 20
TASK_LABELS_MAX = 20
# A project filter names at most this many projects (`GET /api/v2/tasks?project_id=1,2,...`).
PROJECT_FILTER_MAX = 100

# Pages of a listing.
PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100
# The change feed's page (spec api-v2 section 7): a client catching up reads many at once.
FEED_PAGE_SIZE_DEFAULT = 100
FEED_PAGE_SIZE_MAX = 1000
CURSOR_MAX_LENGTH = 1024

# Headers.
ENTITY_TAG_HEADER_MAX_LENGTH = 1024  # If-Match, If-None-Match
IDEMPOTENCY_KEY_MAX_LENGTH = 255

# v2: webhooks and notifications (spec api-v2 sections 8 and 9).
WEBHOOK_URL_MAX_LENGTH = 2048
WEBHOOK_DESCRIPTION_MAX_LENGTH = 500
WEBHOOK_EVENTS_MAX = 70  # every "<entity>.<action>" name, or "*"
WEBHOOKS_PER_PROJECT_MAX = 20
# How much of a receiver's answer is read (the rest is never read) and kept in the log.
WEBHOOK_RESPONSE_KEPT_BYTES = 1024
# Secrets of our own making: "whsec_" and base64 of 24 random bytes.
WEBHOOK_SECRET_BYTES = 24
# For how long a rotated-out secret still signs, beside the new one.
WEBHOOK_PREVIOUS_SECRET_HOURS = 24
