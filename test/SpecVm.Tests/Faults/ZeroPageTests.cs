using SpecVm.Faults;
using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;
using SpecVm.Tests.Memory;
using SpecVm.Tests.Mm;

namespace SpecVm.Tests.Faults;

/// <summary>
/// The shared zero page (Linux <c>do_anonymous_page</c>'s read branch and <c>wp_page_copy</c> with the zero pfn): a
/// read fault maps the machine's one zero frame read-only, a later write replaces it with a fresh zeroed frame, and
/// nothing that unmaps ever frees or counts it.
/// </summary>
[Collection(MachineCollection.Name)]
public sealed class ZeroPageTests
{
    private const ulong Page = 4096;

    /// <summary>A 2 MiB-aligned base, so the pages below share one PTE table.</summary>
    private const ulong Base = 0x6000_0000;

    [Theory]
    [InlineData("mmap-lock")]
    [InlineData("speculative")]
    [InlineData("per-vma-lock")]
    public void AReadFaultMapsTheZeroFrameWithoutAllocatingOne(string strategy)
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, TestMachines.Strategy(strategy));
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 4 * Page, Protection.ReadWrite, fixedAddress: Base);

            // A first write builds the page tables and gives the VMA its anon_vma, so that the read below is the
            // speculative and per-VMA-lock paths' own (neither falls back for a missing table or anon_vma).
            mm.Write(cpu, a, 1UL);
            long anonymous = machine.Memory.Census().Anonymous;
            long zeroed = cpu.Read(CpuCounter.PagesZeroed);
            long zeroPageFaults = cpu.Read(CpuCounter.FaultZeroPage);
            long anonReads = cpu.Read(CpuCounter.FaultAnonRead);

            Assert.Equal(0UL, mm.Read<ulong>(cpu, a + Page + 8));
            var bytes = new byte[Page];
            bytes.AsSpan().Fill(0xAA);
            Assert.Equal(AccessResult.Ok, mm.TryReadBytes(cpu, a + Page, bytes));
            Assert.All(bytes, b => Assert.Equal(0, b));

            Pte pte = PteAt(mm, a + Page);
            Assert.Equal(machine.ZeroPfn, pte.Pfn);
            Assert.False(pte.IsWritable);
            Assert.Equal(anonymous, machine.Memory.Census().Anonymous); // No frame allocated for the read.
            Assert.Equal(zeroed, cpu.Read(CpuCounter.PagesZeroed)); // And none zeroed.
            Assert.Equal(1, cpu.Read(CpuCounter.FaultZeroPage) - zeroPageFaults);
            Assert.Equal(1, cpu.Read(CpuCounter.FaultAnonRead) - anonReads); // Still an anonymous read fault.
            if (strategy == "speculative")
            {
                Assert.Equal(0, cpu.Read(CpuCounter.SpecAbortPteChanged));
                Assert.True(cpu.Read(CpuCounter.SpecSuccess) >= 1);
            }
        });
        TestMachines.AssertNoViolations(mm);
        Assert.Equal(0, machine.Memory.Frame(machine.ZeroPfn).MapCount); // Its mappings are never counted.
    }

    [Theory]
    [InlineData("mmap-lock")]
    [InlineData("speculative")]
    [InlineData("per-vma-lock")]
    public void AWriteAfterAZeroPageReadGetsAFreshZeroedFrameAndTheZeroFrameStays(string strategy)
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, TestMachines.Strategy(strategy));
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 2 * Page, Protection.ReadWrite, fixedAddress: Base);
            Assert.Equal(0UL, mm.Read<ulong>(cpu, a));
            Assert.Equal(machine.ZeroPfn, PteAt(mm, a).Pfn);
            long anonymous = machine.Memory.Census().Anonymous;
            long zeroed = cpu.Read(CpuCounter.PagesZeroed);
            long copied = cpu.Read(CpuCounter.PagesCopied);
            long writeProtect = cpu.Read(CpuCounter.FaultWriteProtect);

            mm.Write(cpu, a + 8, 0x1234UL);

            Pte pte = PteAt(mm, a);
            Assert.NotEqual(machine.ZeroPfn, pte.Pfn);
            Assert.True(pte.IsWritable);
            Assert.Equal(FrameState.Anonymous, machine.Memory.Frame(pte.Pfn).ReadState());
            Assert.Equal(0UL, mm.Read<ulong>(cpu, a));
            Assert.Equal(0x1234UL, mm.Read<ulong>(cpu, a + 8));
            Assert.Equal(anonymous + 1, machine.Memory.Census().Anonymous);
            Assert.Equal(1, cpu.Read(CpuCounter.PagesZeroed) - zeroed); // wp_page_copy of the zero pfn: zeroed,
            Assert.Equal(copied, cpu.Read(CpuCounter.PagesCopied)); // not copied.
            Assert.Equal(1, cpu.Read(CpuCounter.FaultWriteProtect) - writeProtect);
        });
        Assert.Equal(FrameState.ZeroPage, machine.Memory.Frame(machine.ZeroPfn).ReadState());
        Assert.All(machine.Memory.FrameSpan(machine.ZeroPfn).ToArray(), b => Assert.Equal(0, b));
        TestMachines.AssertNoViolations(mm);
    }

    [Fact]
    public void MunmapAndDontNeedNeverFreeTheZeroFrameAndTheLedgerBalances()
    {
        using Machine machine = TestMachines.Create(1, 16);
        var ledger = FrameLedger.Begin(machine);
        var mm = new AddressSpace(machine, new MmapLockStrategy());
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 64 * Page, Protection.ReadWrite, fixedAddress: Base);
            for (ulong p = 0; p < 64; p++)
            {
                Assert.Equal(0UL, mm.Read<ulong>(cpu, a + (p * Page)));
            }

            mm.Write(cpu, a + (3 * Page), 3UL); // One private copy among the zero-page mappings.
            mm.DontNeed(cpu, a, 32 * Page);
            Assert.Equal(0UL, mm.Read<ulong>(cpu, a + (3 * Page))); // Dropped: it reads zero again, through the zero page.
            Assert.Equal(machine.ZeroPfn, PteAt(mm, a + (3 * Page)).Pfn);
            mm.Protect(cpu, a, 64 * Page, Protection.Read);
            mm.Protect(cpu, a, 64 * Page, Protection.ReadWrite);
            Assert.False(PteAt(mm, a + (40 * Page)).IsWritable); // mprotect never makes the zero page writable.
            mm.Unmap(cpu, a, 16 * Page);
        });
        TestMachines.AssertNoViolations(mm);
        mm.Dispose(); // Tears down the remaining zero-page mappings.
        ledger.AssertBalanced();
        Assert.Equal(FrameState.ZeroPage, machine.Memory.Frame(machine.ZeroPfn).ReadState());
        Assert.Equal(0, machine.Memory.Frame(machine.ZeroPfn).MapCount);
    }

    [Fact]
    public void TwoAddressSpacesShareTheOneZeroFrame()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var first = new AddressSpace(machine, new MmapLockStrategy());
        using var second = new AddressSpace(machine, new PerVmaLockStrategy());
        machine.Run(0, cpu =>
        {
            ulong a = first.Map(cpu, Page, Protection.Read, fixedAddress: Base);
            ulong b = second.Map(cpu, Page, Protection.ReadWrite, fixedAddress: Base + (8 * Page));
            Assert.Equal(0UL, first.Read<ulong>(cpu, a));
            Assert.Equal(0UL, second.Read<ulong>(cpu, b));
            Assert.Equal(machine.ZeroPfn, PteAt(first, a).Pfn);
            Assert.Equal(machine.ZeroPfn, PteAt(second, b).Pfn);
        });
        Assert.Equal(1, machine.Memory.Census().ZeroPage);
        IReadOnlyList<string> violations = InvariantChecker.FindViolations(machine, [first, second], []);
        Assert.True(violations.Count == 0, string.Join("\n", violations));
    }

    [Fact]
    public void WithoutTheZeroPageAReadFaultAllocatesAndZeroesAFrameAsBefore()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy(), new AddressSpaceOptions { UseZeroPage = false });
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: Base);
            long anonymous = machine.Memory.Census().Anonymous;
            Assert.Equal(0UL, mm.Read<ulong>(cpu, a));
            Pte pte = PteAt(mm, a);
            Assert.NotEqual(machine.ZeroPfn, pte.Pfn);
            Assert.True(pte.IsWritable); // Mapped writable at once, as a write fault would map it.
            Assert.Equal(anonymous + 1, machine.Memory.Census().Anonymous);
            Assert.Equal(1, cpu.Read(CpuCounter.PagesZeroed));
            Assert.Equal(0, cpu.Read(CpuCounter.FaultZeroPage));
            Assert.Equal(1, cpu.Read(CpuCounter.FaultAnonRead));
            mm.Write(cpu, a, 5UL);
            Assert.Equal(0, cpu.Read(CpuCounter.FaultWriteProtect)); // No second fault for the write.
        });
        TestMachines.AssertNoViolations(mm);
    }

    [Fact]
    public void AWriteToTheZeroPageWithInterruptsDisabledIsRefusedBeforeItChangesAnything()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: Base);
            Assert.Equal(0UL, mm.Read<ulong>(cpu, a));
            string before = machine.Memory.Census().ToString();
            cpu.LocalIrqDisable();
            try
            {
                // The copy ends with a shootdown, which needs interrupts: found out before a frame is taken (the
                // adversarial API test's seed 6Z8aBCpKKo41 once saw a frame mapped and then the shootdown refused).
                Assert.Throws<InvalidOperationException>(() => mm.Write(cpu, a, 1UL));
            }
            finally
            {
                cpu.LocalIrqEnable();
            }

            Assert.Equal(before, machine.Memory.Census().ToString());
            Assert.Equal(machine.ZeroPfn, PteAt(mm, a).Pfn);
            mm.Write(cpu, a, 1UL);
            Assert.Equal(1UL, mm.Read<ulong>(cpu, a));
        });
        TestMachines.AssertNoViolations(mm);
    }

    [Fact]
    public void TheCheckerCatchesASecondZeroPageAndACountedZeroPage()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        Assert.Empty(InvariantChecker.FindViolations(mm));

        long impostor = machine.Frames.Allocate(-1, FrameState.ZeroPage);
        IReadOnlyList<string> violations = InvariantChecker.FindViolations(mm);
        Assert.Contains(violations, v => v.Contains("zero-page state", StringComparison.Ordinal));
        machine.Frames.Free(-1, impostor);

        machine.Memory.Frame(machine.ZeroPfn).MapCount = 1;
        Assert.Contains(InvariantChecker.FindViolations(mm), v => v.Contains("zero page has map count", StringComparison.Ordinal));
        machine.Memory.Frame(machine.ZeroPfn).MapCount = 0;
        Assert.Empty(InvariantChecker.FindViolations(mm));
    }

    [Fact]
    public void TheZeroPageCannotBeFreedByMistakeUnnoticed()
    {
        using Machine machine = TestMachines.Create(1, 16);
        var ledger = FrameLedger.Begin(machine);
        machine.Memory.Frame(machine.ZeroPfn).WriteState(FrameState.Anonymous); // Planted: the zero page lost its state.
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(ledger.AssertBalanced);
        machine.Memory.Frame(machine.ZeroPfn).WriteState(FrameState.ZeroPage);
        ledger.AssertBalanced();
    }

    /// <summary>The present PTE mapping <paramref name="va"/> (fails the test if none).</summary>
    internal static Pte PteAt(AddressSpace mm, ulong va)
    {
        Pte? found = null;
        mm.PageTable.ForEachPresent((at, pte) =>
        {
            if (at == (va & ~(Page - 1)))
            {
                found = pte;
            }
        });
        Assert.True(found.HasValue, $"No present PTE at 0x{va:x}.");
        return found.Value;
    }
}
