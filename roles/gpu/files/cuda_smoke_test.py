"""CUDA smoke test through the driver API (libcuda), so it needs no Python package."""
import ctypes
import sys

try:
    cuda = ctypes.CDLL("libcuda.so.1")
except OSError as error:
    sys.exit(f"CUDA smoke test: cannot load libcuda.so.1: {error}")
status = cuda.cuInit(0)
if status != 0:
    sys.exit(f"CUDA smoke test: cuInit failed with CUresult {status}")
count = ctypes.c_int()
status = cuda.cuDeviceGetCount(ctypes.byref(count))
if status != 0 or count.value < 1:
    sys.exit(f"CUDA smoke test: cuDeviceGetCount gave {count.value} (CUresult {status})")
version = ctypes.c_int()
cuda.cuDriverGetVersion(ctypes.byref(version))
print(f"CUDA OK: {count.value} device(s), driver API {version.value // 1000}.{version.value % 1000 // 10}")
