using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using SpecVm.Memory;
using SpecVm.Sync;

namespace SpecVm.Faults;

/// <summary>
/// Page clear and copy kernels for anonymous and copy-on-write faults: a vectorised loop where the hardware has
/// 256-bit vectors, with a scalar fallback. A benchmark compares them with <c>NativeMemory.Clear</c> and
/// <c>Buffer.MemoryCopy</c>.
/// </summary>
internal static unsafe class PageKernels
{
    /// <summary>Zeroes one 4 KiB page.</summary>
    /// <param name="page">The page (4 KiB aligned).</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Clear(byte* page)
    {
        VirtualTime.Work(SimWork.PageZero);
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<byte> zero = Vector256<byte>.Zero;
            for (int i = 0; i < PhysicalMemory.PageSize; i += 128)
            {
                Vector256.StoreAligned(zero, page + i);
                Vector256.StoreAligned(zero, page + i + 32);
                Vector256.StoreAligned(zero, page + i + 64);
                Vector256.StoreAligned(zero, page + i + 96);
            }
        }
        else
        {
            ClearScalar(page);
        }
    }

    /// <summary>Copies one 4 KiB page.</summary>
    /// <param name="source">The source page (4 KiB aligned).</param>
    /// <param name="destination">The destination page (4 KiB aligned).</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Copy(byte* source, byte* destination)
    {
        VirtualTime.Work(SimWork.PageCopy);
        if (Vector256.IsHardwareAccelerated)
        {
            for (int i = 0; i < PhysicalMemory.PageSize; i += 64)
            {
                Vector256.StoreAligned(Vector256.LoadAligned(source + i), destination + i);
                Vector256.StoreAligned(Vector256.LoadAligned(source + i + 32), destination + i + 32);
            }
        }
        else
        {
            CopyScalar(source, destination);
        }
    }

    /// <summary>The scalar fallback of <see cref="Clear"/>.</summary>
    /// <param name="page">The page.</param>
    public static void ClearScalar(byte* page)
    {
        ulong* p = (ulong*)page;
        for (int i = 0; i < PhysicalMemory.PageSize / 8; i++)
        {
            p[i] = 0;
        }
    }

    /// <summary>The scalar fallback of <see cref="Copy"/>.</summary>
    /// <param name="source">The source page.</param>
    /// <param name="destination">The destination page.</param>
    public static void CopyScalar(byte* source, byte* destination)
    {
        ulong* s = (ulong*)source;
        ulong* d = (ulong*)destination;
        for (int i = 0; i < PhysicalMemory.PageSize / 8; i++)
        {
            d[i] = s[i];
        }
    }
}
