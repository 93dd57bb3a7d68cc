using System.Runtime.InteropServices;
using System.Runtime.CompilerServices;
using System.Text.Json;
using SpecVm.Faults;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Smp;
using SpecVm.Sync;
using SpecVm.Workloads;
using Xunit;

namespace SpecVm.Tests.Simulation;

/// <summary>The virtual-time mode: determinism, analytic anchors, deadlock detection, misuse.</summary>
public sealed unsafe class SimulatorTests
{
    /// <summary>A flat topology (every transfer 50 ns) for the analytic anchors.</summary>
    private static CostModel Flat() => new()
    {
        Name = "flat",
        Sockets = 1,
        CoresPerSocket = 64,
        CoresPerComplex = 64,
        SameComplexNs = 50,
        SameSocketNs = 50,
        OtherSocketNs = 50,
        LocalAtomicNs = 6,
        LocalHitNs = 1,
    };

    /// <summary>Runs <paramref name="body"/> on <paramref name="n"/> simulated CPUs until each one's clock passes <paramref name="untilNs"/>; returns each CPU's count.</summary>
    private static long[] RunOnCpus(int n, CostModel model, double untilNs, Action<Simulator, Cpu> body, TimeSpan? quantum = null)
    {
        using var machine = new Machine(new MachineOptions { CpuCount = n, MemoryBytes = 16L << 20, Pin = false, AllowOversubscription = true });
        var counts = new long[n];
        using (var sim = new Simulator(machine, model, n == 64 ? ulong.MaxValue : (1UL << n) - 1, quantum ?? TimeSpan.Zero))
        {
            Task[] tasks = Enumerable.Range(0, n).Select(i => machine.RunAsync(i, cpu => sim.Run(cpu, () =>
            {
                while (sim.Now(cpu.Id) < untilNs)
                {
                    body(sim, cpu);
                    if (sim.Now(cpu.Id) <= untilNs)
                    {
                        counts[cpu.Id]++; // Only operations that complete inside the window count.
                    }
                }
            }))).ToArray();
            Task.WaitAll(tasks);
        }

        return counts;
    }

    [Theory]
    [InlineData(2)]
    [InlineData(8)]
    [InlineData(32)]
    public void CpusIncrementingOneAtomic_SaturateAtOneTransferPerOperation(int n)
    {
        CostModel m = Flat();
        object word = new();
        const double T = 200_000; // ns
        long total = RunOnCpus(n, m, T, (_, _) => VirtualTime.Access(word, 0, LineAccess.Rmw)).Sum();
        double perNs = total / T;
        double expected = 1 / (m.SameComplexNs + m.LocalAtomicNs);
        Assert.InRange(perNs / expected, 0.95, 1.05);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(16)]
    [InlineData(32)]
    public void OneLock_FollowsTheClosedQueueBound(int n)
    {
        // Machine repairman with deterministic times: X(N) = min(N / (c + z + u), 1 / (c + h)), u the uncontended
        // lock cost, h the hand-off (release store, wake one transfer later, the winner's CAS transfer).
        CostModel m = Flat();
        const double C = 2000, Z = 8000, T = 400_000;
        void* mem = NativeMemory.AlignedAlloc(64, 64);
        try
        {
            NativeMemory.Clear(mem, 64);
            long total = RunOnCpus(n, m, T, (sim, cpu) =>
            {
                ref PtLock lk = ref Unsafe.AsRef<PtLock>(mem);
                lk.Lock(cpu.Id, cpu);
                sim.Spend(cpu, C);
                lk.Unlock(cpu.Id);
                sim.Spend(cpu, Z);
            }).Sum();
            double x = total / T;
            double u = n == 1 ? m.LocalAtomicNs + m.LocalHitNs : m.SameComplexNs + m.LocalAtomicNs + m.LocalHitNs;
            double h = m.LocalHitNs + (2 * m.SameComplexNs) + m.LocalAtomicNs;
            double expected = Math.Min(n / (C + Z + u), 1 / (C + h));
            Assert.InRange(x / expected, 0.95, 1.05);
        }
        finally
        {
            NativeMemory.AlignedFree(mem);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(16)]
    [InlineData(48)]
    public void ReadMostlyRwsem_ScalesUntilItsCountLineSaturates(int n)
    {
        CostModel m = Flat();
        var sem = new RwSemaphore();
        const double Z = 500, T = 200_000;
        long total = RunOnCpus(n, m, T, (sim, cpu) =>
        {
            sem.ReadLock(cpu);
            sem.ReadUnlock();
            sim.Spend(cpu, Z);
        }).Sum();
        double x = total / T;
        double perOp = n == 1 ? 2 * m.LocalAtomicNs : 2 * (m.SameComplexNs + m.LocalAtomicNs);
        double expected = Math.Min(n / (Z + perOp), 1 / perOp);
        Assert.InRange(x / expected, 0.95, 1.05);
    }

    private static ScalingResult Predict(int threads, params string[] strategies) => new ScalingExperiment(new ScalingOptions
    {
        Workloads = [new PageFault1(2L << 20), new DatabaseLoad(2L << 20, 2000)],
        Strategies = strategies.Select(s => StrategyCatalog.TryCreate(s)!).ToList(),
        ThreadCounts = [threads],
        Repeats = 1,
        Verify = true,
        VirtualTime = new VirtualTimeOptions { Band = false, Warmup = TimeSpan.FromMilliseconds(0.2), Duration = TimeSpan.FromMilliseconds(0.5) },
    }).Run();

    private static string PointsJson(ScalingResult r) => JsonSerializer.Serialize(r.Points.Select(p => new
    {
        p.Workload, p.Strategy, p.Threads, p.Mode, p.OpsPerSecond, p.PerThreadOpsPerSecond, p.BackgroundOpsPerSecond, p.Outcomes, p.Counters, p.Metrics,
    }));

    [Fact]
    public void SameConfiguration_GivesIdenticalResults()
    {
        string a = PointsJson(Predict(6, "mmap-lock", "speculative", "per-vma-lock"));
        string b = PointsJson(Predict(6, "mmap-lock", "speculative", "per-vma-lock"));
        Assert.Equal(a, b);
        Assert.Contains("\"Mode\":\"predicted\"", a);
    }

    [Fact]
    public void LinesPerFault_CountWhatEachStrategyTouches()
    {
        // The shared-line tally behind the report's "Cache lines per fault": each strategy's signature lines, per fault.
        ScalingResult r = Predict(2, "mmap-lock", "speculative", "per-vma-lock");
        SharedLineOps Line(string strategy, string line) =>
            r.Points.Single(p => p.Workload == "page-fault1" && p.Strategy == strategy).LinesPerFault![line];

        // down_read + up_read: two read-modify-writes of the count per fault, and with two CPUs most of them transfers.
        SharedLineOps mmapLock = Line("mmap-lock", "mmap_lock count");
        Assert.InRange(mmapLock.Rmws, 1.9, 2.2);
        Assert.InRange(mmapLock.Transfers, 0.5, 2.2);

        // The speculative path reads the VMA's sequence count twice (begin, recheck under the PTL) and never takes the lock.
        Assert.InRange(Line("speculative", "VMA sequence count").Loads, 1.9, 2.2);
        Assert.True(Line("speculative", "mmap_lock count").Rmws < 0.2);

        // The per-VMA lock takes and drops the VMA's reader count: two read-modify-writes of one shared line.
        Assert.InRange(Line("per-vma-lock", "VMA reader count (vm_refcnt)").Rmws, 1.9, 2.2);

        // Every strategy installs one PTE under the split PTL per fault: the lock is a read-modify-write, the unlock a
        // release store.
        foreach (string s in new[] { "mmap-lock", "speculative", "per-vma-lock" })
        {
            Assert.InRange(Line(s, "PTE").Stores, 0.9, 1.3);
            SharedLineOps ptl = Line(s, "PTL (split page-table lock)");
            Assert.InRange(ptl.Rmws, 0.9, 1.3);
            Assert.InRange(ptl.Stores, 0.9, 1.3);
        }
    }

    [Fact]
    public void PredictedPoints_AreLabelledAndCarryABand()
    {
        ScalingResult r = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new PageFault1(1L << 20)],
            Strategies = [StrategyCatalog.TryCreate("mmap-lock")!],
            ThreadCounts = [2],
            Repeats = 1,
            VirtualTime = new VirtualTimeOptions { Warmup = TimeSpan.FromMilliseconds(0.1), Duration = TimeSpan.FromMilliseconds(0.3) },
        }).Run();
        ScalingPoint p = Assert.Single(r.Points);
        Assert.Equal("predicted", p.Mode);
        Assert.Equal("virtual", r.Settings.TimeMode);
        Assert.True(p.OpsPerSecond > 0);
        Assert.InRange(p.OpsPerSecond, p.PredictedLow!.Value, p.PredictedHigh!.Value);
        Assert.True(p.PredictedHigh > p.PredictedLow, "perturbing the uncertain constants should move the prediction");
    }

    [Fact]
    public void TwoCpusTakingTwoLocksInOppositeOrder_AreReportedAsASimulatedDeadlock()
    {
        // Planted ABBA deadlock: both CPUs park on a lock line nobody will write; no CPU can run.
        void* mem = NativeMemory.AlignedAlloc(128, 64);
        try
        {
            NativeMemory.Clear(mem, 128);
            var e = Assert.ThrowsAny<Exception>(() => RunOnCpus(2, Flat(), 1e6, (sim, cpu) =>
            {
                ref PtLock first = ref Unsafe.AsRef<PtLock>((byte*)mem + (cpu.Id * 64));
                ref PtLock second = ref Unsafe.AsRef<PtLock>((byte*)mem + ((1 - cpu.Id) * 64));
                first.Lock(cpu.Id, cpu);
                sim.Spend(cpu, 100);
                second.Lock(cpu.Id, cpu);
            }));
            Assert.Contains("Simulated deadlock", e.ToString());
            Assert.Contains("every CPU is waiting", e.ToString());
        }
        finally
        {
            NativeMemory.AlignedFree(mem);
        }
    }

    [Fact]
    public void SpinningWithIrqsOffAgainstAnAckWaiter_IsReportedAsALivelockWithTheCpuStates()
    {
        // The article's hazard, planted in miniature: CPU 1 spins on a lock with interrupts disabled; CPU 0 holds the
        // lock and spins until CPU 1 acknowledges something it never will (a shootdown ack, in the kernel).
        void* mem = NativeMemory.AlignedAlloc(64, 64);
        int acked = 0;
        try
        {
            NativeMemory.Clear(mem, 64);
            var e = Assert.ThrowsAny<Exception>(() => RunOnCpus(2, Flat(), 1e9, (sim, cpu) =>
            {
                ref PtLock lk = ref Unsafe.AsRef<PtLock>(mem);
                if (cpu.Id == 0)
                {
                    lk.Lock(0, cpu);
                    while (Volatile.Read(ref acked) == 0)
                    {
                        cpu.Relax();
                    }
                }
                else
                {
                    sim.Spend(cpu, 500);
                    cpu.LocalIrqDisable();
                    lk.Lock(1, cpu);
                    acked = 1;
                }
            }));
            string all = e.ToString();
            Assert.Contains("Simulated deadlock", all);
            Assert.Contains("irqs off", all);
        }
        finally
        {
            NativeMemory.AlignedFree(mem);
        }
    }

    /// <summary>Every model workload of the catalog.</summary>
    public static TheoryData<string> ModelWorkloads() => [.. WorkloadCatalog.Names.Where(n => !n.StartsWith("native-", StringComparison.Ordinal))];

    [Theory]
    [MemberData(nameof(ModelWorkloads))]
    public void EveryModelWorkload_RunsInVirtualTimeUnderEveryCatalogStrategy_WithItsInvariantsIntact(string name)
    {
        // Small sizes: the point is that each workload's code runs on simulated CPUs, waits and all, and stays correct.
        Workload w = WorkloadCatalog.TryCreate(name, mappingBytes: 1L << 20, sliceBytes: 2L << 20, writerOpsPerSecond: 5000)!;
        ScalingResult r = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [w],
            Strategies = StrategyCatalog.CorrectNames.Select(StrategyCatalog.Create).ToList(),
            ThreadCounts = [3],
            Repeats = 1,
            Verify = true,
            VirtualTime = new VirtualTimeOptions { Band = false, Warmup = TimeSpan.FromMilliseconds(0.1), Duration = TimeSpan.FromMilliseconds(0.3) },
        }).Run();
        Assert.Equal(StrategyCatalog.CorrectNames.Count, r.Points.Count);
        Assert.All(r.Points, p => Assert.True(p.OpsPerSecond > 0, $"{p.Workload} / {p.Strategy}: no operations in the window"));
    }

    [Fact]
    public void BadInput_IsRefusedWithTheRuleNamed()
    {
        Assert.Throws<ArgumentException>(() => CostModel.Preset("no-such-machine"));
        Assert.Throws<ArgumentException>(() => CostModel.FromJson("{\"sockets\": 0}"));
        Assert.Throws<ArgumentException>(() => CostModel.FromJson("{\"sameSocketNs\": -5}"));
        Assert.Throws<ArgumentException>(() => CostModel.FromJson("{\"noSuchConstant\": 1}"));
        Assert.Throws<ArgumentException>(() => CostModel.FromJson("not json"));
        Assert.Throws<ArgumentException>(() => Flat().Scaled("Name", 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => Flat().Scaled(nameof(CostModel.SameSocketNs), -1));
        Assert.Throws<ArgumentException>(() => new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new NativePageFault(1, 1L << 20)],
            ThreadCounts = [1],
            VirtualTime = new VirtualTimeOptions(),
        }));
        Assert.Throws<ArgumentException>(() => new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new PageFault1(1L << 20)],
            Strategies = [StrategyCatalog.TryCreate("mmap-lock")!],
            ThreadCounts = [1],
            VirtualTime = new VirtualTimeOptions { Duration = TimeSpan.Zero },
        }));
        using var machine = new Machine(new MachineOptions { CpuCount = 2, MemoryBytes = 16L << 20, Pin = false });
        Assert.Throws<ArgumentOutOfRangeException>(() => new Simulator(machine, Flat(), 0, TimeSpan.Zero));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Simulator(machine, Flat(), 0b100, TimeSpan.Zero));
    }

    [Fact]
    public void CostModel_RoundTripsThroughJson()
    {
        CostModel m = CostModel.Preset("epyc-2s-128");
        CostModel back = CostModel.FromJson(m.ToJson());
        Assert.Equal(m.ToJson(), back.ToJson());
        Assert.Equal(128, back.Cores);
        Assert.Equal(m.OtherSocketNs, back.TransferNs(0, 64));
        Assert.Equal(m.SameComplexNs, back.TransferNs(0, 7));
        Assert.Equal(m.SameSocketNs, back.TransferNs(0, 8));
    }
}
