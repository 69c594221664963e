"""PyTorch peer of the compress kernel, as the BitDelta reference code does it:
delta = W_f - W_b (in the weights' dtype), scale = mean |delta| in float32,
mask = (delta >= 0), packed 32 signs to an int32 along the input dimension by
shifting each bit to its power of two and summing. One thread (one core),
one 11008 x 4096 bf16 pair by default; prints "torch_compress_gbps X" (input
bytes of both matrices per second, best of --reps) and the mean |delta|.
"""
import argparse
import time

import torch


def pack_signs(mask, n_bits=32):
    """bool (K, N) -> int32 (K / n_bits, N): bit i of word k is row k*n_bits + i."""
    k, n = mask.shape
    shift = torch.arange(n_bits, device=mask.device)
    grouped = mask.view(k // n_bits, n_bits, n).to(torch.int64) << shift[None, :, None]
    return grouped.sum(dim=1).to(torch.int32)


def compress(wf, wb):
    diff = wf - wb
    scale = diff.float().abs().mean()
    mask = torch.ones_like(diff)
    mask[diff < 0] = 0
    packed = pack_signs(mask.bool().T)  # BitDelta packs W^T: (in, out)
    return packed, scale


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=11008)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    wb = ((torch.rand(a.rows, a.cols, generator=g) - 0.5) * 0.04).to(torch.bfloat16)
    wf = (wb.float() + (torch.rand(a.rows, a.cols, generator=g) - 0.5) * 0.002).to(torch.bfloat16)
    nbytes = 2 * wb.numel() * wb.element_size()
    best = float("inf")
    for _ in range(a.reps):
        t0 = time.perf_counter()
        packed, scale = compress(wf, wb)
        best = min(best, time.perf_counter() - t0)
    print("torch_threads %d" % a.threads)
    print("torch_mean_abs_delta %.9g" % scale.item())
    print("torch_compress_gbps %.3f" % (nbytes / best * 1e-9))


if __name__ == "__main__":
    main()
