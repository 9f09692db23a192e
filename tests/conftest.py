import sys
from pathlib import Path

# tests import their helpers (synthetic, e2e_utils) by module name
sys.path.insert(0, str(Path(__file__).parent))
