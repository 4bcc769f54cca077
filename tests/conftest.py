import sys
from pathlib import Path

# kernel_cases.py, shared by the test_kernels_* files, is imported as a sibling module;
# pytest's importlib import mode does not put this folder on sys.path.
sys.path.insert(0, str(Path(__file__).parent))
