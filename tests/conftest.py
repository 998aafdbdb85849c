"""Suite-wide fixtures. ``tests/`` is on ``sys.path`` (pytest puts a rootless conftest's folder
there), so test modules import helpers as ``fixtures.<module>``."""

from fixtures.ray_head import ray_head_fixture  # noqa: F401  (registers `ray_head`)
from fixtures.s3 import _s3_session, s3_server  # noqa: F401  (registers `s3_server`)
from fixtures.scripted_server import scripted_server_fixture  # noqa: F401  (registers `scripted_server`)
