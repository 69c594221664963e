/* CPU / CUDA dispatch of the jobs' kernels (see src/device_ops.h). */
#include "config.h"
#include "src/device_ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef DS_HAVE_CUDA
#include "kernels/cuda/ds_cuda.h"
#endif

/* A device buffer that only grows: one per role, reused across tensors. */
typedef struct {
    void *p;
    size_t cap;
} dbuf;

struct ds_dev {
    ds_device kind;
    int gpu;
    dbuf a, b, bits, row, col, scale;
};

int ds_dev_open(const ds_ctx *ctx, const char *arg, ds_dev **out)
{
    ds_device kind = DS_DEVICE_CPU;
    *out = NULL;
    int rc = ds_ctx_agree(ctx, ds_device_select(arg, &kind));
    if (rc) return rc;
    if (!arg) { /* a node without a GPU makes every rank use the CPU */
        int k = (int)kind, all;
        MPI_Allreduce(&k, &all, 1, MPI_INT, MPI_MIN, ctx->comm);
        kind = (ds_device)all;
    }
    int gpu = -1;
    if (kind == DS_DEVICE_CUDA && (rc = ds_device_bind(ctx, 0, &gpu))) return rc;
    ds_dev *d = ds_calloc(1, sizeof *d);
    d->kind = kind;
    d->gpu = gpu;
    *out = d;
    return 0;
}

ds_device ds_dev_kind(const ds_dev *d) { return d->kind; }

int ds_dev_cpu_only(const char *arg)
{
    ds_device kind;
    if (!arg || strcmp(arg, "cpu") == 0) return 0;
    if (strcmp(arg, "cuda") == 0)
        return ds_err(DS_EXIT_USAGE, "--device cuda: the model engine runs on the CPU; --device cuda is not supported by this job yet");
    return ds_device_select(arg, &kind);
}

#ifdef DS_HAVE_CUDA
static void dbuf_free(dbuf *b)
{
    if (b->p) cudaFree(b->p);
    b->p = NULL;
    b->cap = 0;
}

/* At least n bytes of b on the current GPU; the old contents are dropped. */
static int dbuf_grow(const ds_dev *d, dbuf *b, size_t n, const char *name)
{
    if (n <= b->cap) return 0;
    dbuf_free(b);
    cudaError_t e = cudaMalloc(&b->p, n);
    if (e != cudaSuccess) {
        b->p = NULL;
        return ds_err(DS_EXIT_FAIL, "tensor %s: cudaMalloc of %zu bytes on GPU %d: %s", name, n, d->gpu,
                      cudaGetErrorString(e));
    }
    b->cap = n;
    return 0;
}

static int copy(const ds_dev *d, void *dst, const void *src, size_t n, enum cudaMemcpyKind dir, const char *name)
{
    if (n == 0) return 0;
    cudaError_t e = cudaMemcpy(dst, src, n, dir);
    if (e != cudaSuccess)
        return ds_err(DS_EXIT_FAIL, "tensor %s: cudaMemcpy (%s) on GPU %d: %s", name,
                      dir == cudaMemcpyHostToDevice ? "to the GPU" : "from the GPU", d->gpu, cudaGetErrorString(e));
    return 0;
}

static int kernel_failed(const ds_dev *d, const char *name)
{
    return ds_err(DS_EXIT_FAIL, "tensor %s: GPU %d: %s", name, d->gpu, ds_cuda_errmsg());
}

/* The GPU half of ds_dev_code: bits, row and (per column) column |delta|
 * sums, as ds_delta_code gets them from ds_bitpack_compress. */
static int code_cuda(ds_dev *d, const ds_delta_entry *e, const void *wf, const void *wb, uint64_t *bits,
                     double *row_abs, double *col_abs)
{
    const char *nm = e->t.name;
    size_t rows = (size_t)e->rows, cols = (size_t)e->cols, bytes = rows * cols * ds_dtype_size(e->t.dtype);
    size_t nbits = sizeof(uint64_t) * rows * ds_bitpack_words(cols);
    int rc = dbuf_grow(d, &d->a, bytes, nm);
    if (!rc) rc = dbuf_grow(d, &d->b, bytes, nm);
    if (!rc) rc = dbuf_grow(d, &d->bits, nbits, nm);
    if (!rc) rc = dbuf_grow(d, &d->row, sizeof(double) * rows, nm);
    if (!rc && col_abs) rc = dbuf_grow(d, &d->col, sizeof(double) * cols, nm);
    if (!rc) rc = copy(d, d->a.p, wf, bytes, cudaMemcpyHostToDevice, nm);
    if (!rc) rc = copy(d, d->b.p, wb, bytes, cudaMemcpyHostToDevice, nm);
    if (!rc && col_abs && cudaMemset(d->col.p, 0, sizeof(double) * cols) != cudaSuccess)
        rc = ds_err(DS_EXIT_FAIL, "tensor %s: cudaMemset on GPU %d: %s", nm, d->gpu,
                    cudaGetErrorString(cudaGetLastError()));
    if (!rc && ds_cuda_bitpack_compress((ds_kdtype)e->t.dtype, d->a.p, d->b.p, rows, cols, d->bits.p, d->row.p,
                                        col_abs ? d->col.p : NULL, 0))
        rc = kernel_failed(d, nm);
    /* The blocking copies wait for the kernel and report a failure while it ran. */
    if (!rc) rc = copy(d, bits, d->bits.p, nbits, cudaMemcpyDeviceToHost, nm);
    if (!rc) rc = copy(d, row_abs, d->row.p, sizeof(double) * rows, cudaMemcpyDeviceToHost, nm);
    if (!rc && col_abs) rc = copy(d, col_abs, d->col.p, sizeof(double) * cols, cudaMemcpyDeviceToHost, nm);
    return rc;
}
#endif

void ds_dev_close(ds_dev *d)
{
    if (!d) return;
#ifdef DS_HAVE_CUDA
    dbuf *all[] = {&d->a, &d->b, &d->bits, &d->row, &d->col, &d->scale};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dbuf_free(all[i]);
#endif
    free(d);
}

int ds_dev_code(ds_dev *d, const ds_delta_entry *e, const void *wf, const void *wb, uint64_t *bits, float *scales,
                int64_t *bad)
{
#ifdef DS_HAVE_CUDA
    if (d->kind == DS_DEVICE_CUDA) {
        double *row_abs = ds_malloc(sizeof(double) * (size_t)(e->rows ? e->rows : 1));
        double *col_abs = e->mode == DS_SCALE_COL ? ds_malloc(sizeof(double) * (size_t)(e->cols ? e->cols : 1)) : NULL;
        int rc = code_cuda(d, e, wf, wb, bits, row_abs, col_abs), finite = 1;
        *bad = -1;
        for (int64_t i = 0; !rc && i < e->rows && finite; i++) finite = isfinite(row_abs[i]);
        /* A non-finite sum: the CPU path names the first bad element. */
        if (!rc && !finite) *bad = ds_delta_code(e, wf, wb, bits, scales);
        else if (!rc) ds_delta_scales(e, row_abs, col_abs, scales);
        free(row_abs);
        free(col_abs);
        return rc;
    }
#endif
    (void)d;
    *bad = ds_delta_code(e, wf, wb, bits, scales);
    return 0;
}

int ds_dev_apply(ds_dev *d, ds_dtype dt, void *w, const ds_delta_entry *e, const uint64_t *bits,
                 const float *scales)
{
    size_t rows = (size_t)e->rows, cols = (size_t)e->cols;
#ifdef DS_HAVE_CUDA
    if (d->kind == DS_DEVICE_CUDA) {
        const char *nm = e->t.name;
        size_t bytes = rows * cols * ds_dtype_size(dt), nbits = sizeof(uint64_t) * rows * ds_bitpack_words(cols);
        size_t nsc = sizeof(float) * (size_t)e->n_scales;
        int rc = dbuf_grow(d, &d->a, bytes, nm);
        if (!rc) rc = dbuf_grow(d, &d->bits, nbits, nm);
        if (!rc) rc = dbuf_grow(d, &d->scale, nsc, nm);
        if (!rc) rc = copy(d, d->a.p, w, bytes, cudaMemcpyHostToDevice, nm);
        if (!rc) rc = copy(d, d->bits.p, bits, nbits, cudaMemcpyHostToDevice, nm);
        if (!rc) rc = copy(d, d->scale.p, scales, nsc, cudaMemcpyHostToDevice, nm);
        if (!rc && ds_cuda_bitpack_apply((ds_kdtype)dt, d->a.p, (ds_kdtype)dt, d->a.p, d->bits.p, rows, cols, e->mode,
                                         d->scale.p, 0))
            rc = kernel_failed(d, nm);
        if (!rc) rc = copy(d, w, d->a.p, bytes, cudaMemcpyDeviceToHost, nm);
        return rc;
    }
#endif
    (void)d;
    ds_bitpack_apply((ds_kdtype)dt, w, (ds_kdtype)dt, w, bits, rows, cols, e->mode, scales);
    return 0;
}
