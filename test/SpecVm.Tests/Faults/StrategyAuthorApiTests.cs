using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Tests.Mm;

namespace SpecVm.Tests.Faults;

/// <summary>
/// The public pieces a fault strategy is written with (issue #12), each doing what its Linux namesake does: the mmap
/// lock, the mm-wide speculation sequence, a VMA's sequence count, read lock and reference count, and the lockless
/// walk with its PTE slot, prepare, install and abandon.
/// </summary>
[Collection(MachineCollection.Name)]
public class StrategyAuthorApiTests
{
    private const ulong Page = 4096;

    [Fact]
    public void MmapReadLockIsTheMmapLockAndUnlockWithoutItThrows()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        machine.Run(0, cpu =>
        {
            long before = cpu.Read(CpuCounter.MmapReadAcquisitions);
            mm.MmapReadLock(cpu);
            Assert.Equal(1, mm.MmapLock.ReaderCount);
            Assert.Equal(before + 1, cpu.Read(CpuCounter.MmapReadAcquisitions));
            mm.MmapReadUnlock();
            Assert.Equal(0, mm.MmapLock.ReaderCount);
            Assert.Throws<SynchronizationLockException>(mm.MmapReadUnlock);
        });
    }

    [Fact]
    public void MmapLockSpeculationIsRefusedDuringAWriteAndInvalidatedByOneAnywhereInTheAddressSpace()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, Page, Protection.ReadWrite);
            Assert.True(mm.MmapLockSpeculateTryBegin(out int seq));
            Assert.False(mm.MmapLockSpeculateRetry(seq));

            ulong other = mm.Map(cpu, Page, Protection.ReadWrite); // A writer in an unrelated range.
            Assert.True(mm.MmapLockSpeculateRetry(seq));
            Assert.True(mm.MmapLockSpeculateTryBegin(out int again));
            Assert.False(mm.MmapLockSpeculateRetry(again));

            mm.MmapLock.EnterWrite(cpu); // A writer inside: nothing may be read speculatively.
            try
            {
                Assert.False(mm.MmapLockSpeculateTryBegin(out _));
                Assert.True(mm.MmapLockSpeculateRetry(again));
            }
            finally
            {
                mm.MmapLock.ExitWrite();
            }

            mm.Unmap(cpu, a, Page);
            mm.Unmap(cpu, other, Page);
        });
    }

    [Fact]
    public void AVmaReadIsInvalidatedAndItsReadLockRefusedOnceAWriterReplacesIt()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 2 * Page, Protection.ReadWrite);

            // Inside an SRCU read section, as a lockless reader: the VMA is not recycled until it ends.
            int idx = machine.Srcu.ReadLock(cpu.Id);
            try
            {
                Vma vma = mm.Vmas.Find(a)!;
                Assert.True(vma.TryReadBegin(out int seq));
                Assert.False(vma.ReadRetry(seq));
                Assert.False(vma.ReadRetryAfterFence(seq));
                Assert.Equal(VmaReadLockResult.Locked, vma.TryReadLock(mm));
                vma.ReadUnlock();
                Assert.Throws<SynchronizationLockException>(vma.ReadUnlock);

                vma.Get();
                Assert.Equal(1, vma.Refs);
                vma.Put();
                Assert.Equal(0, vma.Refs);

                mm.Protect(cpu, a, Page, Protection.Read); // Splits the VMA: it is replaced by two new ones.
                Assert.True(vma.ReadRetry(seq));
                Assert.True(vma.IsDetached);
                Assert.Equal(VmaReadLockResult.Detached, vma.TryReadLock(mm));
                Assert.Equal(VmaReadLockResult.Locked, mm.Vmas.Find(a)!.TryReadLock(mm));
                mm.Vmas.Find(a)!.ReadUnlock();
            }
            finally
            {
                machine.Srcu.ReadUnlock(cpu.Id, idx);
            }

            mm.Unmap(cpu, a, 2 * Page);
        });
        InvariantChecker.Check(mm);
    }

    [Fact]
    public void WalkLocklessRefusesACpuWithInterruptsEnabled()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, Page, Protection.ReadWrite);
            mm.Write(cpu, a, 1UL);
            InvalidOperationException e = Assert.Throws<InvalidOperationException>(() => { _ = FaultCore.WalkLockless(cpu, mm, a); });
            Assert.Contains("interrupts enabled", e.Message, StringComparison.Ordinal);
            mm.Unmap(cpu, a, Page);
        });
    }

    [Fact]
    public void ALocklessWalkInstallsAPreparedPageUnderThePtlAndRefusesAStaleEntry()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 2 * Page, Protection.ReadWrite);
            mm.Write(cpu, a, 7UL); // Allocates the page tables; the second page stays unmapped.
            Vma vma = mm.Vmas.Find(a + Page)!;

            cpu.LocalIrqDisable();
            try
            {
                Assert.False(FaultCore.WalkLockless(cpu, mm, a + (1UL << 30)).HasTable); // Another 1 GiB: no tables.

                PteSlot first = FaultCore.WalkLockless(cpu, mm, a);
                ulong mapped = first.Read();
                Assert.True(PteSlot.IsPresent(mapped));
                Assert.True(PteSlot.Permits(mapped, write: true));

                PteSlot slot = FaultCore.WalkLockless(cpu, mm, a + Page);
                Assert.True(slot.HasTable);
                ulong empty = slot.Read();
                Assert.False(PteSlot.IsPresent(empty));
                Assert.False(PteSlot.Permits(empty, write: false));

                Assert.Equal(FaultResult.Handled, FaultCore.Prepare(cpu, mm, vma, a + Page, true, out PreparedPage page));
                Assert.True(slot.TryLock(cpu));
                Assert.False(slot.TryLock(cpu)); // Held: a trylock never spins.
                try
                {
                    Assert.True(FaultCore.Install(cpu, mm, ref page, slot, empty));
                }
                finally
                {
                    slot.Unlock(cpu);
                }

                Assert.True(PteSlot.Permits(slot.Read(), write: true));

                // A second fault that read the entry before the first installed: its install changes nothing.
                Assert.Equal(FaultResult.Handled, FaultCore.Prepare(cpu, mm, vma, a + Page, true, out PreparedPage late));
                slot.Lock(cpu);
                try
                {
                    Assert.False(FaultCore.Install(cpu, mm, ref late, slot, empty));
                }
                finally
                {
                    slot.Unlock(cpu);
                }

                FaultCore.Abandon(cpu, mm, ref late);
            }
            finally
            {
                cpu.LocalIrqEnable();
            }

            long faults = cpu.Read(CpuCounter.Faults);
            Assert.Equal(0UL, mm.Read<ulong>(cpu, a + Page)); // The installed page: zeroed, and no fault to reach it.
            mm.Write(cpu, a + Page, 9UL);
            Assert.Equal(faults, cpu.Read(CpuCounter.Faults));
            Assert.Equal(7UL, mm.Read<ulong>(cpu, a));
        });
        InvariantChecker.Check(mm); // Frames balance: the abandoned page went back.
        machine.Run(0, cpu => mm.Unmap(cpu, mm.Vmas.Snapshot()[0].Start, 2 * Page));
        InvariantChecker.Check(mm);
    }
}
