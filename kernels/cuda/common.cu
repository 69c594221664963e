/* Error messages and GPU discovery for the CUDA kernels. */
#include "kernels/cuda/cuda_impl.h"
#include <stdarg.h>
#include <stdio.h>

static __thread char errmsg[512];
static char no_device_reason[256];

int ds_cuda_fail(const char *what, const char *fmt, ...)
{
    int n = snprintf(errmsg, sizeof errmsg, "%s: ", what);
    if (n < 0 || (size_t)n >= sizeof errmsg) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg + n, sizeof errmsg - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

const char *ds_cuda_errmsg(void) { return errmsg; }

int ds_cuda_device_count(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        /* No driver, a driver older than the runtime (35) or no device (100):
         * all mean there is no GPU to use. Clear the sticky error state. */
        snprintf(no_device_reason, sizeof no_device_reason, "cudaGetDeviceCount: %s (error %d)",
                 cudaGetErrorString(e), (int)e);
        cudaGetLastError();
        return 0;
    }
    if (n == 0) snprintf(no_device_reason, sizeof no_device_reason, "no CUDA device");
    else no_device_reason[0] = '\0';
    return n;
}

const char *ds_cuda_no_device_reason(void) { return no_device_reason; }
