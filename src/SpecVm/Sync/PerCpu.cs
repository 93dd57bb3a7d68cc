using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SpecVm.Sync;

/// <summary>
/// Per-CPU storage (Linux <c>DEFINE_PER_CPU</c>): one slot per CPU, each slot a whole number of
/// <see cref="CacheLine.Size"/>-byte lines in one native, line-aligned block, so that no two CPUs' slots share a line.
/// </summary>
/// <typeparam name="T">The unmanaged slot type.</typeparam>
/// <remarks>
/// The slots live in native memory (garnet's LightEpoch entry table does the same) so their alignment is real, not
/// hoped for: a managed array may start anywhere within a line. A slot is meant to be written only by its own CPU;
/// other CPUs may read it (summing counters), which is what makes the padding worth it.
/// </remarks>
internal sealed unsafe class PerCpu<T> : IDisposable
    where T : unmanaged
{
    private byte* _base;
    private readonly int _count;
    private readonly int _stride;

    /// <summary>Allocates <paramref name="count"/> zeroed slots.</summary>
    /// <param name="count">The number of CPUs; at least 1.</param>
    public PerCpu(int count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        _count = count;
        _stride = SlotStride;
        _base = (byte*)NativeMemory.AlignedAlloc((nuint)(_stride * count), CacheLine.Size);
        NativeMemory.Clear(_base, (nuint)(_stride * count));
    }

    /// <summary>The distance in bytes between two CPUs' slots: <c>sizeof(T)</c> rounded up to whole cache lines.</summary>
    public static int SlotStride => (Unsafe.SizeOf<T>() + CacheLine.Size - 1) / CacheLine.Size * CacheLine.Size;

    /// <summary>The number of slots (CPUs).</summary>
    public int Count => _count;

    /// <summary>The slot of CPU <paramref name="cpu"/>.</summary>
    /// <param name="cpu">The CPU id, 0 to <see cref="Count"/> - 1.</param>
    public ref T this[int cpu]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            if ((uint)cpu >= (uint)_count)
            {
                ThrowBadCpu(cpu);
            }

            ObjectDisposedException.ThrowIf(_base == null, this);
            return ref Unsafe.AsRef<T>(_base + (nint)cpu * _stride);
        }
    }

    /// <summary>Frees the native block. Slots must not be used afterwards.</summary>
    public void Dispose()
    {
        byte* p = _base;
        _base = null;
        if (p != null)
        {
            NativeMemory.AlignedFree(p);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowBadCpu(int cpu) =>
        throw new ArgumentOutOfRangeException(nameof(cpu), cpu, $"CPU id must be in 0..{_count - 1}.");
}
