"""What several engine test files share: the shared data folder and one trained model per test run.

SHARED_DATA: the real data beside the repository (../shared/data from its root), or
$TOPAZPU_DATA; tests that need it skip when it is absent.
"""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("TOPAZPU_DATA") or os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
