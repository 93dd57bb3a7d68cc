using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Faults;

/// <summary>
/// The classic page-fault path: take the mmap lock for read, find the VMA, handle the fault, release. Every fault
/// does an atomic read-modify-write of the mmap lock's count word, so concurrent faulters bounce its cache line and
/// any writer (map, unmap, protect) stops them all.
/// </summary>
public sealed class MmapLockStrategy : FaultStrategy
{
    /// <inheritdoc/>
    public override string Name => "mmap-lock";

    /// <inheritdoc/>
    public override FaultResult HandleFault(Cpu cpu, AddressSpace mm, ulong address, bool write)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);
        cpu.Count(CpuCounter.MmapLockFaults);
        mm.MmapReadLock(cpu);
        try
        {
            Vma? vma = mm.Vmas.Find(address);
            return vma == null ? FaultResult.SegmentationFault : FaultCore.HandleStable(cpu, mm, vma, address, write);
        }
        finally
        {
            mm.MmapReadUnlock();
        }
    }
}
