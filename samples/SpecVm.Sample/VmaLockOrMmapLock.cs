using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

/// <summary>
/// A fault strategy written outside SpecVm, against its public API alone: Linux's per-VMA lock
/// (<c>lock_vma_under_rcu</c>, 6.4+) with the mmap lock as the fallback, in one file.
/// </summary>
public sealed class VmaLockOrMmapLock : FaultStrategy
{
    // Counted per CPU, without atomics, like the built-in counters; registered once per process.
    private static readonly RegisteredCounter UnderVmaLock = RegisteredCounter.Register("vma-lock-or-mmap-lock/vma lock");
    private static readonly RegisteredCounter UnderMmapLock = RegisteredCounter.Register("vma-lock-or-mmap-lock/mmap lock");

    private static readonly FaultOutcome[] AllOutcomes =
    [
        new("vma lock", FaultOutcomeKind.Success, UnderVmaLock, "Handled with only the VMA read-locked."),
        new("mmap lock", FaultOutcomeKind.Fallback, UnderMmapLock, "Handled under the mmap lock (VMA not lockable, or the fault asked for a retry)."),
    ];

    public override string Name => "vma-lock-or-mmap-lock";

    public override IReadOnlyList<FaultOutcome> Outcomes => AllOutcomes;

    public override FaultResult HandleFault(Cpu cpu, AddressSpace mm, ulong address, bool write)
    {
        Vma? vma = LockVma(cpu, mm, address);
        if (vma != null)
        {
            FaultResult result;
            try
            {
                result = FaultCore.HandleUnderVmaLock(cpu, mm, vma, address, write);
            }
            finally
            {
                vma.ReadUnlock();
            }

            // Retry (Linux VM_FAULT_RETRY): this fault needs the mmap lock, e.g. to give the VMA its anon_vma.
            if (result != FaultResult.Retry)
            {
                cpu.Count(UnderVmaLock);
                return result;
            }
        }

        // The mmap lock is taken only with no VMA locked: a writer holding it waits for the VMA's readers.
        cpu.Count(UnderMmapLock);
        mm.MmapReadLock(cpu);
        try
        {
            Vma? stable = mm.Vmas.Find(address);
            return stable == null ? FaultResult.SegmentationFault : FaultCore.HandleStable(cpu, mm, stable, address, write);
        }
        finally
        {
            mm.MmapReadUnlock();
        }
    }

    /// <summary>Finds the VMA without the mmap lock and read-locks it, or returns null.</summary>
    private static Vma? LockVma(Cpu cpu, AddressSpace mm, ulong address)
    {
        // The SRCU read section keeps a VMA found here from being recycled until the lock attempt is over.
        int idx = cpu.Machine.Srcu.ReadLock(cpu.Id);
        try
        {
            Vma? vma = mm.Vmas.Find(address);
            if (vma == null || vma.TryReadLock(mm) != VmaReadLockResult.Locked)
            {
                return null; // No VMA (the mmap lock path decides SIGSEGV), a writer marked it, or it was just replaced.
            }

            if (!vma.Contains(address))
            {
                vma.ReadUnlock();
                return null;
            }

            return vma;
        }
        finally
        {
            cpu.Machine.Srcu.ReadUnlock(cpu.Id, idx);
        }
    }
}
