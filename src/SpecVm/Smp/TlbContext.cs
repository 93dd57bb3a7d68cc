using System.Runtime.InteropServices;
using SpecVm.Sync;

namespace SpecVm.Smp;

/// <summary>
/// The TLB-coherence part of an address space (the x86 <c>mm->context</c>): its id, its TLB generation
/// (<c>tlb_gen</c>) and the mask of CPUs that have it loaded (<c>mm_cpumask</c>).
/// </summary>
/// <remarks>
/// Every change that removes or narrows a translation bumps <see cref="Generation"/> before it sends IPIs; a CPU
/// records the generation it has flushed up to, so one that slept through a shootdown (lazy) sees it is behind when
/// it wakes and flushes itself. The generation and the mask each sit on their own cache line.
/// </remarks>
internal sealed class TlbContext
{
    private static int s_nextId;
    private Line _line;

    /// <summary>Creates a context with a fresh id.</summary>
    public TlbContext() => Id = Interlocked.Increment(ref s_nextId) & ((1 << 27) - 1);

    /// <summary>The address-space id used in TLB tags.</summary>
    public int Id { get; }

    /// <summary>The current TLB generation (acquire read).</summary>
    public long Generation => Volatile.Read(ref _line.Generation);

    /// <summary>The CPUs that have this context loaded (acquire read).</summary>
    public ulong CpuMask => Volatile.Read(ref _line.CpuMask);

    /// <summary>Bumps the generation (full fence) and returns the new value.</summary>
    internal long NextGeneration() => Interlocked.Increment(ref _line.Generation);

    /// <summary>Adds a CPU to the mask (full fence; see Cpu.SwitchTo for the ordering argument).</summary>
    internal void AddCpu(int cpu) => Interlocked.Or(ref _line.CpuMask, 1UL << cpu);

    /// <summary>Removes a CPU from the mask.</summary>
    internal void RemoveCpu(int cpu) => Interlocked.And(ref _line.CpuMask, ~(1UL << cpu));

    [StructLayout(LayoutKind.Explicit, Size = 3 * CacheLine.Size)]
    private struct Line
    {
        [FieldOffset(CacheLine.Size)]
        public long Generation;

        [FieldOffset(2 * CacheLine.Size)]
        public ulong CpuMask;
    }
}
