using SpecVm.Faults;
using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Smp;
using SpecVm.Tests.Diagnostics;
using SpecVm.Tests.Memory;
using SpecVm.Workloads;
using Xunit.Abstractions;

namespace SpecVm.Tests.Mm;

/// <summary>
/// Transparent huge pages (<see cref="AddressSpaceOptions.TransparentHugePages"/>): a fault in an anonymous VMA covering
/// an aligned 2 MiB maps a 2 MiB page with one PMD entry (Linux <c>do_huge_pmd_anonymous_page</c>), falling back to
/// 4 KiB pages when the machine's reserve is empty; unmap, <c>MADV_DONTNEED</c> and mprotect zap or change it whole, or
/// split it first when they cover part of it (<c>__split_huge_pmd</c>), keeping the data; the speculative strategies
/// leave huge faults to the classic path, as published; the invariant checker knows huge leaves and catches the bugs
/// planted in them.
/// </summary>
[Collection(MachineCollection.Name)]
public sealed unsafe class TransparentHugePageTests(ITestOutputHelper output)
{
    private const ulong Page = 4096;
    private const ulong Huge = PageTable.PteTableSpan;
    private const int Subpages = PageTable.HugePages;

    /// <summary>A 2 MiB-aligned base for fixed mappings.</summary>
    private const ulong Base = 0x4000_0000;

    public static TheoryData<string> Strategies => [.. TestMachines.StrategyNames];

    public static TheoryData<string> SpeculativeStrategies => [.. TestMachines.StrategyNames.Where(n => n.StartsWith("speculative", StringComparison.Ordinal))];

    private static Machine NewMachine(int cpus = 2, int hugeBlocks = 8, int folioBatch = -1)
    {
        var options = new MachineOptions
        {
            CpuCount = cpus,
            MemoryBytes = 64L << 20,
            HugePageReserve = hugeBlocks,
            WatchdogTimeout = TimeSpan.FromSeconds(5),
        };
        if (folioBatch >= 0)
        {
            options.FolioBatchSize = folioBatch;
        }

        return new Machine(options);
    }

    private static AddressSpace NewSpace(Machine machine, string strategy, bool targeted = false) =>
        new(machine, TestMachines.Strategy(strategy), new AddressSpaceOptions { TransparentHugePages = TransparentHugePageMode.Always, TargetedShootdowns = targeted });

    /// <summary>The PMD of <paramref name="va"/> as a huge leaf, or null if it does not map a huge page.</summary>
    private static Pte? HugeAt(AddressSpace mm, ulong va)
    {
        ulong* leaf = mm.PageTable.WalkLocklessLeaf(va, out _, out bool huge);
        return huge ? new Pte(Volatile.Read(ref *leaf)) : null;
    }

    private static ulong Marker(ulong va) => (va * 0x9E3779B97F4A7C15UL) | 1;

    private static void FillSubpages(AddressSpace mm, Cpu cpu, ulong start, ulong length)
    {
        for (ulong va = start; va < start + length; va += Page)
        {
            mm.Write(cpu, va + 8, Marker(va));
        }
    }

    private static void AssertSubpages(AddressSpace mm, Cpu cpu, ulong start, ulong length)
    {
        for (ulong va = start; va < start + length; va += Page)
        {
            ulong got = mm.Read<ulong>(cpu, va + 8);
            Assert.True(got == Marker(va), $"0x{va:x} reads 0x{got:x}, not its marker.");
        }
    }

    [Theory]
    [MemberData(nameof(Strategies))]
    public void AHugeFaultMapsOne2MiBPageWhose512SubpagesReadAndWriteFromTwoCpus(string strategy)
    {
        using Machine machine = NewMachine();
        var ledger = FrameLedger.Begin(machine);
        using (AddressSpace mm = NewSpace(machine, strategy))
        {
            long faults = 0;
            machine.Run(0, cpu =>
            {
                ulong a = mm.Map(cpu, 2 * Huge, Protection.ReadWrite, fixedAddress: Base);
                long f0 = cpu.Read(CpuCounter.Faults);
                FillSubpages(mm, cpu, a, Huge);
                faults = cpu.Read(CpuCounter.Faults) - f0;
                Assert.Equal(1, cpu.Read(CpuCounter.ThpFaultAlloc));
                Assert.Equal(0, cpu.Read(CpuCounter.ThpFaultFallback));
            });

            // One fault for 512 pages: every other subpage is a TLB miss that finds the PMD leaf.
            Assert.Equal(1, faults);
            Pte pmd = HugeAt(mm, Base) ?? throw new Xunit.Sdk.XunitException("No huge PMD after the fault.");
            Assert.True(pmd.IsWritable && pmd.IsUser && pmd.IsDirty);
            Assert.Equal(0, pmd.Pfn % Subpages);
            Assert.Equal(Subpages, machine.Memory.Census().Anonymous);

            // The other CPU sees the same data through its own TLB, and its writes reach CPU 0.
            machine.Run(1, cpu =>
            {
                AssertSubpages(mm, cpu, Base, Huge);
                for (ulong va = Base; va < Base + Huge; va += Page)
                {
                    mm.Write(cpu, va + 16, ~Marker(va));
                }

                Assert.Equal(0, cpu.Read(CpuCounter.Faults));
            });
            machine.Run(0, cpu =>
            {
                for (ulong va = Base; va < Base + Huge; va += Page)
                {
                    Assert.Equal(~Marker(va), mm.Read<ulong>(cpu, va + 16));
                }
            });

            TestMachines.AssertNoViolations(mm);
            machine.Run(0, cpu => mm.Unmap(cpu, Base, 2 * Huge));
            Assert.Equal(8, machine.Frames.FreeHugeBlocks);
        }

        ledger.AssertBalanced();
    }

    [Theory]
    [MemberData(nameof(SpeculativeStrategies))]
    public void TheSpeculativePathsAbortOnAHugePageAndTheClassicPathCompletesTheFault(string strategy)
    {
        using Machine machine = NewMachine(cpus: 1);
        using AddressSpace mm = NewSpace(machine, strategy);
        FaultOutcome huge = mm.Strategy.Outcomes.Single(o => o.Name == "abort: huge-page");
        FaultOutcome fallback = mm.Strategy.Outcomes.Single(o => o.Kind == FaultOutcomeKind.Fallback);
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 2 * Huge, Protection.ReadWrite, fixedAddress: Base);

            // An empty PMD in a VMA covering the aligned 2 MiB: the classic path would map a huge page, so the
            // speculative path gives up (the series: pmd_none goes to out_walk) and the fallback maps it.
            mm.Write(cpu, a, 7UL);
            Assert.Equal(1, huge.Read(machine));
            Assert.Equal(1, fallback.Read(machine));
            Assert.Equal(1, cpu.Read(CpuCounter.ThpFaultAlloc));
            Assert.Equal(7UL, mm.Read<ulong>(cpu, a));

            // A fault that finds the PMD mapping a huge page (as one does that lost the race to another CPU's huge
            // fault): pmd_trans_huge, abort again; the classic path finds the work done.
            Assert.Equal(FaultResult.Handled, mm.Strategy.HandleFault(cpu, mm, a + Page, write: true));
            Assert.Equal(2, huge.Read(machine));
            Assert.Equal(2, fallback.Read(machine));
            Assert.Equal(1, cpu.Read(CpuCounter.ThpFaultAlloc));
            Assert.Equal(7UL, mm.Read<ulong>(cpu, a));
        });
        TestMachines.AssertNoViolations(mm);
    }

    [Theory]
    [MemberData(nameof(Strategies))]
    public void WithTheReserveEmptyTheFaultFallsBackTo4KiBPagesAndCountsIt(string strategy)
    {
        using Machine machine = NewMachine(cpus: 1, hugeBlocks: 1);
        var ledger = FrameLedger.Begin(machine);
        using (AddressSpace mm = NewSpace(machine, strategy))
        {
            machine.Run(0, cpu =>
            {
                ulong a = mm.Map(cpu, 2 * Huge, Protection.ReadWrite, fixedAddress: Base);
                FillSubpages(mm, cpu, a, 2 * Huge);
                Assert.Equal(1, cpu.Read(CpuCounter.ThpFaultAlloc));      // The reserve's one block.
                Assert.Equal(1, cpu.Read(CpuCounter.ThpFaultFallback));   // Then thp_fault_fallback, and 4 KiB faults.
                Assert.NotNull(HugeAt(mm, a));
                Assert.Null(HugeAt(mm, a + Huge));
                AssertSubpages(mm, cpu, a, 2 * Huge);
            });
            Assert.Equal(2 * Subpages, machine.Memory.Census().Anonymous);
            TestMachines.AssertNoViolations(mm);
        }

        ledger.AssertBalanced();
    }

    [Fact]
    public void AHugeFaultOnlyHappensWhereTheVmaCoversTheAligned2MiB()
    {
        using Machine machine = NewMachine(cpus: 1);
        using AddressSpace mm = NewSpace(machine, "mmap-lock");
        machine.Run(0, cpu =>
        {
            // Starts 4 KiB into a 2 MiB region and ends 4 KiB into another: only the one whole region in between is huge.
            ulong a = mm.Map(cpu, 2 * Huge, Protection.ReadWrite, fixedAddress: Base + Page);
            FillSubpages(mm, cpu, a, 2 * Huge);
            Assert.Null(HugeAt(mm, Base + Page));
            Assert.NotNull(HugeAt(mm, Base + Huge));
            Assert.Null(HugeAt(mm, Base + (2 * Huge)));
            Assert.Equal(1, cpu.Read(CpuCounter.ThpFaultAlloc));

            // A read with the zero page on maps the 4 KiB zero page (the model has no huge zero page).
            ulong b = mm.Map(cpu, Huge, Protection.ReadWrite, fixedAddress: Base + (8 * Huge));
            Assert.Equal(0UL, mm.Read<ulong>(cpu, b));
            Assert.Null(HugeAt(mm, b));

            // A placed (not fixed) anonymous mapping of whole 2 MiB units is 2 MiB aligned (Linux 6.7+).
            ulong c = mm.Map(cpu, 3 * Huge, Protection.ReadWrite);
            Assert.Equal(0UL, c % Huge);
        });
        TestMachines.AssertNoViolations(mm);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void APartialUnmapSplitsTheHugePageKeepsTheRestAndTheOtherCpuLosesTheUnmappedPages(bool targeted)
    {
        using Machine machine = NewMachine();
        var ledger = FrameLedger.Begin(machine);
        using (AddressSpace mm = NewSpace(machine, "mmap-lock", targeted))
        {
            ulong hole = Base + (100 * Page);
            machine.Run(0, cpu =>
            {
                mm.Map(cpu, Huge, Protection.ReadWrite, fixedAddress: Base);
                FillSubpages(mm, cpu, Base, Huge);
            });
            machine.Run(1, cpu => AssertSubpages(mm, cpu, Base, Huge)); // CPU 1 caches subpage translations.
            machine.Run(0, cpu =>
            {
                mm.Unmap(cpu, hole, 16 * Page);
                Assert.Equal(1, cpu.Read(CpuCounter.ThpSplitPmd));
            });

            Assert.Null(HugeAt(mm, Base));
            Assert.Equal(Subpages - 16, machine.Memory.Census().Anonymous); // The 16 unmapped frames were freed.
            machine.Run(1, cpu =>
            {
                AssertSubpages(mm, cpu, Base, hole - Base);
                AssertSubpages(mm, cpu, hole + (16 * Page), Base + Huge - hole - (16 * Page));
                for (ulong va = hole; va < hole + (16 * Page); va += Page)
                {
                    Assert.Equal(AccessResult.SegmentationFault, mm.TryRead(cpu, va, out ulong _));
                }
            });
            TestMachines.AssertNoViolations(mm);
            machine.Run(0, cpu => mm.Unmap(cpu, Base, Huge));
            Assert.Equal(7, machine.Frames.FreeHugeBlocks); // A split huge page is 4 KiB frames for good.
        }

        ledger.AssertBalanced();
    }

    [Fact]
    public void APartialProtectSplitsAndAWholeProtectChangesTheHugeEntryInPlace()
    {
        using Machine machine = NewMachine();
        using AddressSpace mm = NewSpace(machine, "per-vma-lock");
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 2 * Huge, Protection.ReadWrite, fixedAddress: Base);
            FillSubpages(mm, cpu, a, 2 * Huge);

            // The whole second huge page read-only: one entry changed, no split; back to read-write: writable again.
            mm.Protect(cpu, a + Huge, Huge, Protection.Read);
            Assert.False(HugeAt(mm, a + Huge)!.Value.IsWritable);
            Assert.Equal(AccessResult.SegmentationFault, mm.TryWrite(cpu, a + Huge + Page, 1UL));
            mm.Protect(cpu, a + Huge, Huge, Protection.ReadWrite);
            Assert.True(HugeAt(mm, a + Huge)!.Value.IsWritable);
            Assert.Equal(0, cpu.Read(CpuCounter.ThpSplitPmd));

            // One page of the first: split, that page read-only, the others as they were.
            mm.Protect(cpu, a + Page, Page, Protection.Read);
            Assert.Equal(1, cpu.Read(CpuCounter.ThpSplitPmd));
            Assert.Null(HugeAt(mm, a));
            Assert.Equal(AccessResult.SegmentationFault, mm.TryWrite(cpu, a + Page, 1UL));
            mm.Write(cpu, a + (2 * Page), Marker(a + (2 * Page)) + 1);
            mm.Write(cpu, a + (2 * Page), Marker(a + (2 * Page)));
            AssertSubpages(mm, cpu, a, 2 * Huge);
        });
        machine.Run(1, cpu => Assert.Equal(AccessResult.SegmentationFault, mm.TryWrite(cpu, Base + Page, 2UL)));
        TestMachines.AssertNoViolations(mm);
    }

    [Fact]
    public void APartialDontNeedSplitsAndZeroesOnlyThosePages()
    {
        using Machine machine = NewMachine();
        var ledger = FrameLedger.Begin(machine);
        using (AddressSpace mm = NewSpace(machine, "speculative"))
        {
            machine.Run(0, cpu =>
            {
                ulong a = mm.Map(cpu, 2 * Huge, Protection.ReadWrite, fixedAddress: Base);
                FillSubpages(mm, cpu, a, 2 * Huge);
                mm.DontNeed(cpu, a + (10 * Page), 2 * Page);
                Assert.Equal(1, cpu.Read(CpuCounter.ThpSplitPmd));

                // The whole second huge page: zapped as one entry, no split; the next touch faults a new one.
                mm.DontNeed(cpu, a + Huge, Huge);
                Assert.Equal(1, cpu.Read(CpuCounter.ThpSplitPmd));
                Assert.Null(HugeAt(mm, a + Huge));
            });
            Assert.Equal(Subpages - 2, machine.Memory.Census().Anonymous);
            machine.Run(1, cpu =>
            {
                AssertSubpages(mm, cpu, Base, 10 * Page);
                Assert.Equal(0UL, mm.Read<ulong>(cpu, Base + (10 * Page) + 8));
                Assert.Equal(0UL, mm.Read<ulong>(cpu, Base + (11 * Page) + 8));
                AssertSubpages(mm, cpu, Base + (12 * Page), Huge - (12 * Page));
                mm.Write(cpu, Base + Huge + (5 * Page), 3UL);           // A new huge page (speculative falls back).
                Assert.Equal(0UL, mm.Read<ulong>(cpu, Base + Huge + 8)); // Freshly zeroed.
            });
            Assert.NotNull(HugeAt(mm, Base + Huge));
            TestMachines.AssertNoViolations(mm);
        }

        ledger.AssertBalanced();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(10_000)]
    public void AWholeUnmapFreesAll512FramesAndTheDepositedTableAfterOneShootdown(int zapBatch)
    {
        using Machine machine = NewMachine();
        var ledger = FrameLedger.Begin(machine);
        long tablesBefore = machine.Memory.Census().PageTables;
        using (var mm = new AddressSpace(machine, new MmapLockStrategy(), new AddressSpaceOptions { TransparentHugePages = TransparentHugePageMode.Always, ZapBatchPages = zapBatch }))
        {
            machine.Run(1, cpu => mm.Read<byte>(cpu, mm.Map(cpu, Page, Protection.ReadWrite))); // CPU 1 in the CPU mask.
            machine.Run(0, cpu =>
            {
                ulong a = mm.Map(cpu, 4 * Huge, Protection.ReadWrite, fixedAddress: Base);
                FillSubpages(mm, cpu, a, 4 * Huge);
                Assert.Equal(4, cpu.Read(CpuCounter.ThpFaultAlloc));
                FrameCensus mapped = machine.Memory.Census();
                Assert.Equal(4 * Subpages, mapped.Anonymous);

                // Four deposited tables (one per huge page) beside the upper levels and the one PTE table of the page above.
                Assert.Equal(mm.PageTable.TablePages + 1, mapped.PageTables);
                long sent = cpu.Read(CpuCounter.Shootdowns);
                mm.Unmap(cpu, a, 4 * Huge);
                output.WriteLine($"batch {zapBatch}: {cpu.Read(CpuCounter.Shootdowns) - sent} shootdown(s)");
                // One shootdown for the four huge pages and the freed tables; with a batch of one page, a forced one per
                // huge page (the gather is full after each) and one for the tables.
                Assert.Equal(zapBatch == 1 ? 5 : 1, cpu.Read(CpuCounter.Shootdowns) - sent);
            });
            Assert.Equal(8, machine.Frames.FreeHugeBlocks);
            Assert.Equal(0, machine.Memory.Census().AwaitingFlush);
            TestMachines.AssertNoViolations(mm);
        }

        Assert.Equal(tablesBefore, machine.Memory.Census().PageTables);
        ledger.AssertBalanced();
    }

    [Fact]
    public void DisposeFreesHugePagesAndTheirDeposits()
    {
        using Machine machine = NewMachine();
        var ledger = FrameLedger.Begin(machine);
        using (AddressSpace mm = NewSpace(machine, "per-vma-lock"))
        {
            machine.Run(0, cpu => FillSubpages(mm, cpu, mm.Map(cpu, 3 * Huge, Protection.ReadWrite), 3 * Huge));
            Assert.Equal(5, machine.Frames.FreeHugeBlocks);
        }

        Assert.Equal(8, machine.Frames.FreeHugeBlocks);
        ledger.AssertBalanced();
    }

    [Fact]
    public void TheReserveIsCarvedFromTheTopOfMemoryAndCountsAsFree()
    {
        using Machine machine = NewMachine(cpus: 1, hugeBlocks: 3);
        Assert.Equal(3, machine.Frames.HugeBlocks);
        FrameCensus census = machine.Memory.Census();
        Assert.Equal(census.Free, machine.Frames.FreeFrames);
        long head = machine.Frames.TryAllocateHuge(-1, FrameState.Anonymous);
        Assert.Equal(((machine.Memory.FrameCount / Subpages) - 3) * Subpages, head);
        Assert.Equal(PageFrameFlags.CompoundHead, (PageFrameFlags)machine.Memory.Frame(head).Flags);
        Assert.Equal(PageFrameFlags.CompoundTail, (PageFrameFlags)machine.Memory.Frame(head + 511).Flags);
        Assert.Throws<InvalidOperationException>(() => machine.Frames.Free(-1, head + 1));
        machine.Frames.Free(-1, head);
        Assert.Equal(census.Free, machine.Memory.Census().Free);
        Assert.Equal(3, machine.Frames.FreeHugeBlocks);
        Assert.Throws<ArgumentOutOfRangeException>(() => new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 4L << 20, HugePageReserve = 2 }));
    }

    [Fact]
    public void TheCheckerCatchesASplitThatDropsASubpage()
    {
        using Machine machine = NewMachine();
        using AddressSpace mm = NewSpace(machine, "mmap-lock");
        mm.PlantSplitDropsSubpage = true;
        machine.Run(0, cpu =>
        {
            FillSubpages(mm, cpu, mm.Map(cpu, Huge, Protection.ReadWrite, fixedAddress: Base), Huge);
            mm.Unmap(cpu, Base + Huge - Page, Page); // Splits: subpage 0's PTE is left out.
        });
        IReadOnlyList<string> violations = InvariantChecker.FindViolations(mm);
        output.WriteLine(string.Join(Environment.NewLine, violations));
        Assert.Contains(violations, v => v.Contains("mapped by no PTE", StringComparison.Ordinal));
        mm.PlantSplitDropsSubpage = false;
    }

    [Fact]
    public void TheCheckerCatchesAHugePMDThatStraddlesAVmaEdge()
    {
        using Machine machine = NewMachine(cpus: 1);
        using AddressSpace mm = NewSpace(machine, "mmap-lock");
        machine.Run(0, cpu => FillSubpages(mm, cpu, mm.Map(cpu, Huge, Protection.ReadWrite, fixedAddress: Base), Huge));
        Assert.Empty(InvariantChecker.FindViolations(mm));

        // Plant it by hand: a huge entry for the next, unmapped, 2 MiB.
        ulong* pmd = mm.PageTable.PmdEntry(Base, out _);
        pmd[1] = pmd[0];
        try
        {
            Assert.Contains(InvariantChecker.CheckPtes(mm), v => v.Contains("not inside one anonymous VMA", StringComparison.Ordinal));
        }
        finally
        {
            pmd[1] = 0;
        }
    }

    [HookTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheCheckerCatchesAHugePageFreedBeforeItsShootdown(bool plant)
    {
        using Machine machine = NewMachine(folioBatch: 0);
        using AddressSpace mm = NewSpace(machine, "mmap-lock");
        machine.Run(0, cpu => FillSubpages(mm, cpu, mm.Map(cpu, Huge, Protection.ReadWrite, fixedAddress: Base), Huge));
        machine.Run(1, cpu => AssertSubpages(mm, cpu, Base, 8 * Page)); // CPU 1's TLB holds subpages.
        mm.PlantFreeHugeBeforeShootdown = plant;
        IReadOnlyList<string> atHook = [];
        machine.Hooks.Handler = (point, cpu) =>
        {
            if (point == HookPoint.WriterBetweenZapAndShootdown)
            {
                atHook = InvariantChecker.CheckTlbs(machine, [mm]); // The zap is done, the shootdown not yet.
            }

            return HookAction.Continue;
        };
        machine.Run(0, cpu => mm.Unmap(cpu, Base, Huge));
        machine.Hooks.Handler = null;
        output.WriteLine(string.Join(Environment.NewLine, atHook));
        Assert.Equal(plant, atHook.Any(v => v.Contains("was freed", StringComparison.Ordinal)));
        Assert.NotEmpty(atHook); // Either way CPU 1 still holds translations the page table no longer has: not flushed yet.
        Assert.Empty(InvariantChecker.FindViolations(mm)); // Quiescent again: the shootdown removed them.
    }

    [Theory]
    [MemberData(nameof(Strategies))]
    public void ConcurrentFaultsZapsSplitsAndProtectsOnHugePagesKeepTheInvariants(string strategy)
    {
        // Two CPUs on one shared 8 MiB region and a region each of their own, for a bounded time: faults (huge, and 4 KiB
        // once split), partial and whole DONTNEED, partial and whole mprotect there and back, map and partial unmap;
        // then the checker, the machine's violation log and the frame ledger. Seeded per CPU; any failure names the seed.
        const int Seed = 16;
        const ulong Shared = 4 * Huge;
        using var machine = new Machine(new MachineOptions { CpuCount = 2, MemoryBytes = 160L << 20, HugePageReserve = 64 });
        var ledger = FrameLedger.Begin(machine);
        var stats = new long[2, 4];
        using (AddressSpace mm = NewSpace(machine, strategy))
        {
            machine.Run(0, cpu => mm.Map(cpu, Shared, Protection.ReadWrite, fixedAddress: Base));
            long deadline = Environment.TickCount64 + 1500;
            Task[] cpus = [.. Enumerable.Range(0, 2).Select(id => machine.RunAsync(id, cpu =>
            {
                var rng = new Random(Seed + id);
                while (Environment.TickCount64 < deadline)
                {
                    ulong page = Base + ((ulong)rng.Next((int)(Shared / Page)) * Page);
                    // Partial operations (which split, and so use up the reserve for good) are rare beside whole ones.
                    int op = rng.Next(40);
                    if (op < 20)
                    {
                        stats[id, 0] += ((op & 1) == 0 ? mm.TryWrite(cpu, page, (ulong)rng.Next()) : mm.TryRead(cpu, page, out ulong _)) == AccessResult.Ok ? 1 : 0;
                    }
                    else if (op < 28)
                    {
                        bool all = op != 20;
                        mm.DontNeed(cpu, all ? page & ~(Huge - 1) : page, all ? Huge : Math.Min((ulong)rng.Next(1, 17) * Page, Base + Shared - page));
                        stats[id, 1]++;
                    }
                    else if (op < 34)
                    {
                        bool all = op != 28;
                        ulong at = all ? page & ~(Huge - 1) : page;
                        ulong length = all ? Huge : Math.Min((ulong)rng.Next(1, 9) * Page, Base + Shared - page);
                        mm.Protect(cpu, at, length, Protection.Read);
                        mm.Protect(cpu, at, length, Protection.ReadWrite);
                        stats[id, 2]++;
                    }
                    else
                    {
                        ulong own = mm.Map(cpu, 2 * Huge, Protection.ReadWrite);
                        for (ulong off = 0; off < 2 * Huge; off += 64 * Page)
                        {
                            mm.Write(cpu, own + off, off);
                        }

                        if (op == 34)
                        {
                            mm.Unmap(cpu, own + ((ulong)rng.Next(1, 1023) * Page), Page);
                        }

                        mm.Unmap(cpu, own, 2 * Huge);
                        stats[id, 3]++;
                    }
                }
            }))];
            Task.WaitAll(cpus);
            output.WriteLine($"{strategy} (seed {Seed}): accesses {stats[0, 0] + stats[1, 0]}, dontneeds {stats[0, 1] + stats[1, 1]}, protects {stats[0, 2] + stats[1, 2]}, map/unmaps {stats[0, 3] + stats[1, 3]}; "
                + $"huge faults {machine.Counter(CpuCounter.ThpFaultAlloc)}, fallbacks {machine.Counter(CpuCounter.ThpFaultFallback)}, splits {machine.Counter(CpuCounter.ThpSplitPmd)}");
            Assert.True(machine.Counter(CpuCounter.ThpFaultAlloc) > 0 && machine.Counter(CpuCounter.ThpSplitPmd) > 0, "The run made no huge page or split none.");
            IReadOnlyList<string> violations = InvariantChecker.FindViolations(mm);
            Assert.True(violations.Count == 0, $"seed {Seed}: " + string.Join(Environment.NewLine, violations));
            Assert.Empty(machine.Violations);
        }

        ledger.AssertBalanced();
    }

    [Fact]
    public void PageFault1WithHugePagesIsPredictedInVirtualTimeUnderEveryStrategy()
    {
        // page-fault1 with THP always: each 8 MiB round is four huge faults; the harness sizes the reserve, records the
        // mode and checks the invariants after each run; the speculative strategies leave every fault to the classic path.
        FaultStrategy[] strategies = [.. StrategyCatalog.CorrectNames.Select(n => StrategyCatalog.Create(n))];
        var options = KernelProfile.Default.CreateAddressSpaceOptions();
        options.TransparentHugePages = TransparentHugePageMode.Always;
        ScalingResult r = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new PageFault1(8L << 20)],
            Strategies = strategies,
            ThreadCounts = [1, 2],
            Repeats = 1,
            Verify = true,
            AddressSpaceOptions = options,
            VirtualTime = new VirtualTimeOptions { Band = false, Warmup = TimeSpan.FromMilliseconds(0.1), Duration = TimeSpan.FromMilliseconds(0.5) },
        }).Run();

        Assert.True(r.Failures is null || r.Failures.Count == 0, r.Failures is null ? null : string.Join("; ", r.Failures.Select(f => f.ToString())));
        Assert.Equal("always", r.Settings.TransparentHugePages);
        Assert.Equal(strategies.Length * 2, r.Points.Count);
        foreach (ScalingPoint p in r.Points)
        {
            long huge = p.Counters.GetValueOrDefault(nameof(CpuCounter.ThpFaultAlloc));
            long faults = p.Counters.GetValueOrDefault(nameof(CpuCounter.Faults));
            long aborts = p.Outcomes?.Where(o => o.Name == "abort: huge-page").Sum(o => o.Count) ?? 0;
            output.WriteLine($"{p.Strategy} x{p.Threads}: {p.OpsPerSecond:N0} pages/s, {faults} faults, {huge} huge, {aborts} huge-page aborts");
            Assert.Equal("predicted", p.Mode);
            Assert.True(p.OpsPerSecond > 0, $"{p.Strategy} x{p.Threads}: no operation predicted.");
            Assert.True(huge > 0 && huge == faults, $"{p.Strategy} x{p.Threads}: {huge} huge faults of {faults}.");
            Assert.Equal(p.Strategy.StartsWith("speculative", StringComparison.Ordinal) ? huge : 0, aborts);
        }
    }

    [Fact]
    public void TheTlbCheckerPassesOnAQuiescentMachineAndCatchesAStaleEntry()
    {
        using Machine machine = NewMachine();
        using AddressSpace mm = NewSpace(machine, "mmap-lock");
        machine.Run(0, cpu => FillSubpages(mm, cpu, mm.Map(cpu, Huge, Protection.ReadWrite, fixedAddress: Base), Huge));
        machine.Run(1, cpu => AssertSubpages(mm, cpu, Base, 4 * Page));
        Assert.Empty(InvariantChecker.CheckTlbs(machine, [mm]));

        // Plant a stale translation in CPU 1's TLB: page 0 of the huge page now says frame 1.
        machine.Run(1, cpu => cpu.Tlb.Fill(Tlb.MakeTag(mm.TlbContext.Id, Base >> 12), Base >> 12, Pte.Make(1, Pte.Present | Pte.User).Value));
        Assert.Contains(InvariantChecker.CheckTlbs(machine, [mm]), v => v.Contains("stale", StringComparison.Ordinal));
        machine.Run(1, cpu => cpu.Tlb.FlushAll());
    }
}
