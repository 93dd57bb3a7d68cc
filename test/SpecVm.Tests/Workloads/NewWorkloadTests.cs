using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Smp;
using SpecVm.Tests.Mm;
using SpecVm.Workloads;
using Xunit.Abstractions;

namespace SpecVm.Tests.Workloads;

/// <summary>
/// The will-it-scale analogues (mmap1, mmap2, brk1, madvise-dontneed1, tlb-flush1, page-fault4, page-fault-zero) through the
/// real harness: every strategy of the catalog at 1 and 2 threads, with the invariant checker after each run, and
/// their touch batches free of managed allocation.
/// </summary>
[Collection(Mm.MachineCollection.Name)]
public sealed class NewWorkloadTests(ITestOutputHelper output)
{
    /// <summary>4 MiB per mapping (or region): two PTE tables, 1024 pages; small enough that a run's arena prefaults fast.</summary>
    private const long Small = 4L << 20;

    public static TheoryData<string> NewWorkloads => new()
    {
        "mmap1", "mmap2", "brk1", "madvise-dontneed1", "tlb-flush1", "page-fault4", "page-fault-zero", "map-and-install",
    };

    [Fact]
    public void Brk1GrowsAndShrinksEachHeapByOnePageUnderTheMmapWriteLock()
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 2, MemoryBytes = 16L << 20 });
        var brk = new Brk1();
        brk.Setup(machine, new SpeculativeStrategy(), 2);
        try
        {
            AddressSpace mm = Assert.Single(brk.AddressSpaces);
            long writes0 = machine.Counter(CpuCounter.MmapWriteAcquisitions);
            long ops = machine.Run(1, cpu => brk.RunOperationBatch(cpu, 1));
            Assert.Equal(2 * Brk1.LoopsPerBatch, ops);

            // Every brk call is one write section (the unmap's downgrade included), and no page is faulted in.
            Assert.Equal(ops, machine.Counter(CpuCounter.MmapWriteAcquisitions) - writes0);
            Assert.Equal(0, machine.Counter(CpuCounter.Faults));

            // Each heap is back to one page, in its own VMA (1 GiB apart, the two heaps never merge).
            var vmas = mm.Vmas.Snapshot();
            Assert.Equal(2, vmas.Count);
            Assert.All(vmas, v => Assert.Equal(4096UL, v.End - v.Start));
            Assert.Equal(Brk1.HeapBase + (1UL << 30), vmas[1].Start);
            TestMachines.AssertNoViolations(mm);
        }
        finally
        {
            brk.Teardown();
        }
    }

    [Theory]
    [MemberData(nameof(NewWorkloads))]
    public void TheCatalogCreatesTheWorkloadUnderItsOwnName(string name)
    {
        Assert.Contains(name, WorkloadCatalog.Names);
        Workload w = WorkloadCatalog.TryCreate(name, mappingBytes: Small)!;
        Assert.NotNull(w);
        Assert.Equal(name, w.Name);
        Assert.False(w.IsNative);
        Assert.Equal(0, w.BackgroundTasks);
        Assert.Equal(name, WorkloadCatalog.TryCreate(name.ToUpperInvariant(), mappingBytes: Small)!.Name);
    }

    [Theory]
    [MemberData(nameof(NewWorkloads))]
    public void EveryStrategyMeasuresOneAndTwoThreadsWithTheInvariantsIntact(string name)
    {
        FaultStrategy[] strategies = [.. StrategyCatalog.Names.Select(n => StrategyCatalog.TryCreate(n)!)];
        ScalingResult r = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [WorkloadCatalog.TryCreate(name, mappingBytes: Small)!],
            Strategies = strategies,
            ThreadCounts = [1, 2],
            Warmup = TimeSpan.FromMilliseconds(10),
            Duration = TimeSpan.FromMilliseconds(100), // Several batches even in a Debug build on a loaded 2-core machine.
            Repeats = 1,
            Oversubscribe = true, // Two threads even where the process may use one core.
            Verify = true, // A violation throws out of Run, naming the point.
        }).Run();

        Assert.False(r.Partial);
        Assert.Equal(strategies.Length * 2, r.Points.Count);
        foreach (ScalingPoint p in r.Points)
        {
            output.WriteLine($"{p.Workload} {p.Strategy} x{p.Threads}: {p.OpsPerSecond:N0} {p.OperationUnit}/s, {p.IpisPerSecond:N0} IPIs/s");
            Assert.Equal(name, p.Workload);
            Assert.True(p.OpsPerSecond > 0, $"{p.Strategy} x{p.Threads}: no operation measured.");
            Assert.Equal(p.Threads, p.PerThreadOpsPerSecond.Count);
        }
    }

    [Theory]
    [MemberData(nameof(NewWorkloads))]
    public void EveryStrategyIsPredictedInVirtualTimeWithTheInvariantsIntact(string name)
    {
        // The same workload code on simulated CPUs: one and four, every strategy of the catalog, deterministic.
        FaultStrategy[] strategies = [.. StrategyCatalog.Names.Select(n => StrategyCatalog.TryCreate(n)!)];
        ScalingResult r = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [WorkloadCatalog.TryCreate(name, mappingBytes: Small)!],
            Strategies = strategies,
            ThreadCounts = [1, 4],
            Repeats = 1,
            Verify = true,
            VirtualTime = new VirtualTimeOptions { Band = false, Warmup = TimeSpan.FromMilliseconds(0.1), Duration = TimeSpan.FromMilliseconds(0.3) },
        }).Run();

        Assert.True(r.Failures is null || r.Failures.Count == 0, r.Failures is null ? null : string.Join("; ", r.Failures.Select(f => f.ToString())));
        Assert.Equal(strategies.Length * 2, r.Points.Count);
        foreach (ScalingPoint p in r.Points)
        {
            output.WriteLine($"{p.Workload} {p.Strategy} x{p.Threads} ({p.Mode}): {p.OpsPerSecond:N0} {p.OperationUnit}/s");
            Assert.Equal("predicted", p.Mode);
            Assert.True(p.OpsPerSecond > 0, $"{p.Strategy} x{p.Threads}: no operation predicted.");
        }
    }

    [Theory]
    [InlineData("mmap2")]
    [InlineData("brk1")]
    public void TasksContendingForTheMmapWriteLockInVirtualTimeEachGetAFairShare(string name)
    {
        // Every operation is an mmap write section. Without the rwsem's handoff, the CPU that releases the lock takes it
        // again before the waiters wake (one CPU of four ran ~15x the others); with it, no task starves.
        ScalingResult r = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [WorkloadCatalog.TryCreate(name, mappingBytes: Small)!],
            Strategies = [new MmapLockStrategy()],
            ThreadCounts = [4],
            Repeats = 1,
            VirtualTime = new VirtualTimeOptions { Band = false, Warmup = TimeSpan.FromMilliseconds(0.2), Duration = TimeSpan.FromMilliseconds(1) },
        }).Run();

        ScalingPoint p = Assert.Single(r.Points);
        double min = p.PerThreadOpsPerSecond.Min(), max = p.PerThreadOpsPerSecond.Max();
        output.WriteLine($"{name} x4 predicted: per task {string.Join(", ", p.PerThreadOpsPerSecond.Select(x => x.ToString("N0")))} ops/s");
        Assert.True(min >= max / 3, $"{name}: per-task rates {min:N0}..{max:N0} ops/s: a task starved.");
    }

    [Fact]
    public void FaultersThatFallBackToTheMmapLockAreNotStarvedByATaskMappingInALoop()
    {
        // map-and-install's faulters fall back to the mmap lock once per region (no anon_vma yet) while task 0 takes it
        // for write in a loop. Without the reader handoff they waited the whole window (~800 ops/s against the mapper's
        // ~300,000); with it they run.
        ScalingResult r = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new MapAndInstall()],
            Strategies = [new PerVmaLockStrategy()],
            ThreadCounts = [3],
            Repeats = 1,
            VirtualTime = new VirtualTimeOptions { Band = false, Warmup = TimeSpan.FromMilliseconds(0.2), Duration = TimeSpan.FromMilliseconds(1) },
        }).Run();

        ScalingPoint p = Assert.Single(r.Points);
        output.WriteLine($"map-and-install x3 predicted: per task {string.Join(", ", p.PerThreadOpsPerSecond.Select(x => x.ToString("N0")))} ops/s");
        double mapper = p.PerThreadOpsPerSecond[0];
        Assert.All(p.PerThreadOpsPerSecond.Skip(1), installer => Assert.True(installer > mapper / 10, $"An installer ran {installer:N0} ops/s beside the mapper's {mapper:N0}: starved."));
    }

    [Fact]
    public void TlbFlush1ShootsDownTheOtherCpuOnEveryPageWithTwoThreads()
    {
        ScalingResult r = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new TlbFlush1(Small)],
            Strategies = [new PerVmaLockStrategy()],
            ThreadCounts = [2],
            Warmup = TimeSpan.FromMilliseconds(10),
            Duration = TimeSpan.FromMilliseconds(100),
            Repeats = 1,
            Oversubscribe = true,
        }).Run();

        // One madvise per page, each a flush of an address space the other CPU runs in: about one IPI per operation
        // (fewer when the other CPU happens to be lazy, between batches).
        ScalingPoint p = Assert.Single(r.Points);
        output.WriteLine($"{p.OpsPerSecond:N0} pages/s, {p.IpisPerSecond:N0} IPIs/s");
        Assert.True(p.IpisPerSecond > p.OpsPerSecond / 4, $"{p.IpisPerSecond:N0} IPIs/s for {p.OpsPerSecond:N0} pages/s");
    }

    [Fact]
    public void Mmap1NeverFaultsNorShootsDown()
    {
        ScalingResult r = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new Mmap1(Small)],
            Strategies = [new MmapLockStrategy()],
            ThreadCounts = [2],
            Warmup = TimeSpan.FromMilliseconds(10),
            Duration = TimeSpan.FromMilliseconds(60),
            Repeats = 1,
            Oversubscribe = true,
        }).Run();

        ScalingPoint p = Assert.Single(r.Points);
        Assert.Equal(0, p.FramesAllocatedPerSecond);
        Assert.Equal(0, p.IpisPerSecond);
    }

    [Fact]
    public void TheTouchBatchesAllocateNothing()
    {
        // Batches that neither map nor unmap (DontNeed is allocation-free: its VMA list is per CPU).
        Assert.Equal(0, MiddleBatchesAllocatedBytes(new MadviseDontNeed1(Small), batchesPerRound: 4));
        Assert.Equal(0, MiddleBatchesAllocatedBytes(new TlbFlush1(Small), batchesPerRound: (int)(Small / 4096 / TlbFlush1.BatchPages)));
        Assert.Equal(0, MiddleBatchesAllocatedBytes(new PageFault4(Small), batchesPerRound: 4));
        Assert.Equal(0, MiddleBatchesAllocatedBytes(new PageFaultZero(Small), batchesPerRound: 4));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4096)]
    [InlineData((1L << 20) + 4096)]
    public void MadviseDontNeed1RefusesARegionThatIsNotWholeChunks(long regionBytes) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new MadviseDontNeed1(regionBytes));

    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    public void TheMappingSizeMustBeWholePages(long bytes)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Mmap1(bytes));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Mmap2(bytes));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TlbFlush1(bytes));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PageFault4(bytes));
    }

    /// <summary>
    /// Runs a warm-up round of task 0's batches on CPU 0, then the first batch of the next round (which may map), and
    /// returns the bytes allocated by the batches after it, the last one (which may unmap) excluded.
    /// </summary>
    private static long MiddleBatchesAllocatedBytes(Workload w, int batchesPerRound)
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 64L << 20 });
        w.Setup(machine, new SpeculativeStrategy(), 1);
        try
        {
            return machine.Run(0, cpu =>
            {
                for (int i = 0; i < batchesPerRound; i++)
                {
                    w.RunOperationBatch(cpu, 0); // Warm-up round: JIT, tables, frame caches, per-CPU scratch lists.
                }

                w.RunOperationBatch(cpu, 0);
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 1; i < batchesPerRound - 1; i++)
                {
                    w.RunOperationBatch(cpu, 0);
                }

                return GC.GetAllocatedBytesForCurrentThread() - before;
            });
        }
        finally
        {
            w.Teardown();
        }
    }
}
