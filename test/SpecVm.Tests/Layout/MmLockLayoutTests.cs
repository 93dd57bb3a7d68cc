using System.Runtime.CompilerServices;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Sync;
using SpecVm.Tests.Mm;
using Xunit.Abstractions;

namespace SpecVm.Tests.Layout;

/// <summary>
/// The address space's lock block (<see cref="MmLockLines"/>): with <see cref="LockLayout.Padded"/> the mmap lock's count
/// and the mm-wide page-table lock never share a line; with <see cref="LockLayout.SharedLine"/> they are on one 64-byte
/// line. Each layout's assertion is the other's planted bug: the same check must fail on the other layout.
/// </summary>
[Collection(MachineCollection.Name)]
public sealed unsafe class MmLockLayoutTests(ITestOutputHelper output)
{
    [Fact]
    public void PaddedLayoutGivesTheMmapLockCountAndThePageTableLockALineEach()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, TestMachines.Strategy("mmap-lock"));
        LayoutTable table = Table(mm);
        table.AssertNeverShareALine("mmap_lock count", "page_table_lock");
        table.AssertNeverShareALine("mmap_lock count", "(data before)");
        table.AssertNeverShareALine("page_table_lock", "(data after)");
        table.AssertOffset("mmap_lock count", CacheLine.Size);
        table.AssertOffset("page_table_lock", 2 * CacheLine.Size);
        Assert.False(OnOne64ByteLine(mm), "The padded layout put the two locks on one 64-byte line.\n" + table);
    }

    [Fact]
    public void SharedLineLayoutPutsBothOnOne64ByteLineAndNothingElse()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, TestMachines.Strategy("mmap-lock"), new AddressSpaceOptions { LockLayout = LockLayout.SharedLine });
        LayoutTable table = Table(mm);
        table.AssertTrue(OnOne64ByteLine(mm), "The shared-line layout did not put the two locks on one 64-byte line.");
        table.AssertOffset("mmap_lock count", CacheLine.Size);
        table.AssertOffset("page_table_lock", CacheLine.Size + sizeof(long));

        // The pair shares its line with each other only: nothing of the rest of the block or of the memory around it.
        table.AssertNeverShareALine("page_table_lock", "(data before)");
        table.AssertNeverShareALine("page_table_lock", "(data after)");
        table.AssertNeverShareALine("mmap_lock count", "(data after)");

        // The planted bug for the padded test's check: on this layout it must fail.
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => table.AssertNeverShareALine("mmap_lock count", "page_table_lock"));
    }

    [Theory]
    [InlineData(LockLayout.Padded)]
    [InlineData(LockLayout.SharedLine)]
    public void BothLocksStillWorkIndependentlyOnEitherLayout(LockLayout layout)
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, TestMachines.Strategy("mmap-lock"), new AddressSpaceOptions { LockLayout = layout });
        ref PtLock ptl = ref mm.PageTable.PageTableLock;

        // Two words, not one: holding either lock leaves the other free, whatever line they share.
        Assert.True(ptl.TryLock(0));
        Assert.False(mm.MmapLock.IsWriteLocked);
        Assert.True(mm.MmapLock.TryWriteLock());
        Assert.Equal(0, ptl.Owner);
        ptl.Unlock(0);
        Assert.True(mm.MmapLock.IsWriteLocked);
        mm.MmapLock.WriteUnlock();
        Assert.False(ptl.IsLocked);

        // A fault that installs page tables takes and drops the page-table lock; the checker finds it free afterwards.
        ulong a = machine.Run(0, cpu => mm.Map(cpu, 4096, Protection.ReadWrite));
        machine.Run(0, cpu => mm.Write(cpu, a, 42UL));
        Assert.False(mm.PageTable.PageTableLock.IsLocked);
        TestMachines.AssertNoViolations(mm);
    }

    [Fact]
    public void CheckerCatchesAPageTableLockLeftHeld()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, TestMachines.Strategy("mmap-lock"));
        Assert.True(mm.PageTable.PageTableLock.TryLock(0)); // Planted: a lock an install never dropped.
        Assert.Contains(InvariantChecker.FindViolations(mm), v => v.Contains("page_table_lock", StringComparison.Ordinal));
        mm.PageTable.PageTableLock.Unlock(0);
        Assert.Empty(InvariantChecker.FindViolations(mm));
    }

    private static bool OnOne64ByteLine(AddressSpace mm) =>
        (nint)mm.MmapLock.CountAddress >> 6 == (nint)Unsafe.AsPointer(ref mm.PageTable.PageTableLock) >> 6;

    private LayoutTable Table(AddressSpace mm)
    {
        MmLockLines lines = mm.LockLines;
        byte* origin = lines.Base;
        byte* count = (byte*)mm.MmapLock.CountAddress;
        byte* ptl = (byte*)Unsafe.AsPointer(ref mm.PageTable.PageTableLock);
        var table = new LayoutTable($"{nameof(AddressSpace)} lock block ({lines.Layout})", (nuint)origin)
            .Add("(data before)", -sizeof(long), sizeof(long))
            .Add("mmap_lock count", count - origin, sizeof(long))
            .Add("page_table_lock", ptl - origin, sizeof(int))
            .Add("(data after)", 3 * CacheLine.Size, sizeof(long));
        output.WriteLine(table.ToString());

        // The semaphore and the page table use the block's words (not storage of their own), and the block is aligned.
        table.AssertTrue((nuint)origin % CacheLine.Size == 0, $"The block is not {CacheLine.Size}-byte aligned.");
        table.AssertTrue(count == (byte*)lines.MmapCount, "The mmap lock's count is not the block's.");
        table.AssertTrue(ptl == (byte*)lines.PageTableLock, "The page table's lock is not the block's.");
        table.AssertTrue(ReferenceEquals(mm.PageTable.LockStorage, lines.Storage), "The page table does not keep the block alive.");
        return table;
    }
}
