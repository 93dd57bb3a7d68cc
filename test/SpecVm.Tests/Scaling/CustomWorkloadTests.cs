using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Scaling;
using SpecVm.Smp;
using SpecVm.Workloads;

namespace SpecVm.Tests.Scaling;

public class CustomWorkloadTests
{
    /// <summary>A user workload: each task rewrites one page of a shared mapping (TLB hits after the first fault).</summary>
    private sealed class OnePage(bool fail) : Workload
    {
        private AddressSpace? _mm;
        private ulong _page;

        public int TornDown { get; private set; }

        public override string Name => fail ? "fails" : "one-page";

        public override long MemoryBytes(int threads) => 16L << 20;

        public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
        {
            var mm = new AddressSpace(machine, strategy!);
            _mm = mm;
            _page = machine.Run(0, cpu => mm.Map(cpu, 4096 * (ulong)threads, Protection.ReadWrite));
        }

        public override long RunOperationBatch(Cpu cpu, int task)
        {
            if (fail)
            {
                throw new InvalidOperationException("planted failure");
            }

            _mm!.Write(cpu, _page + (4096 * (ulong)task), 1L);
            return 1;
        }

        public override void Teardown()
        {
            _mm?.Dispose();
            TornDown++;
        }
    }

    private static ScalingExperiment Experiment(Workload w) => new(new ScalingOptions
    {
        Workloads = [w],
        Strategies = [new MmapLockStrategy()],
        ThreadCounts = [1],
        Warmup = TimeSpan.FromMilliseconds(20),
        Duration = TimeSpan.FromMilliseconds(100),
        Repeats = 2,
    });

    [Fact]
    public void AUserSubclassRunsThroughTheHarness()
    {
        var w = new OnePage(fail: false);
        ScalingResult r = Experiment(w).Run();
        ScalingPoint p = Assert.Single(r.Points);
        Assert.Equal("one-page", p.Workload);
        Assert.True(p.OpsPerSecond > 0);
        Assert.Equal(2, p.RepeatOpsPerSecond.Count);
        Assert.True(p.TlbHitRate > 0.9, $"TLB hit rate {p.TlbHitRate}");
        Assert.Equal(2, w.TornDown);
    }

    [Fact]
    public void AFailingWorkloadSurfacesAsOneClearErrorAndIsTornDown()
    {
        var w = new OnePage(fail: true);
        var e = Assert.Throws<InvalidOperationException>(() => Experiment(w).Run());
        Assert.Contains("CPU 0", e.Message);
        Assert.Contains("planted failure", e.Message);
        Assert.Equal(1, w.TornDown);
    }

    [Fact]
    public void ProgressReportsEveryRunStartAndEnd()
    {
        var seen = new List<ScalingProgress>();
        var e = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new OnePage(fail: false)],
            Strategies = [new MmapLockStrategy(), new SpeculativeStrategy()],
            ThreadCounts = [1],
            Warmup = TimeSpan.Zero,
            Duration = TimeSpan.FromMilliseconds(50),
            Repeats = 2,
            Progress = new Recorder(seen),
        });
        e.Run();
        Assert.Equal(8, seen.Count);
        Assert.Equal(4, seen[^1].Completed);
        Assert.All(seen, s => Assert.Equal(4, s.Total));
    }

    private sealed class Recorder(List<ScalingProgress> into) : IProgress<ScalingProgress>
    {
        public void Report(ScalingProgress value) => into.Add(value);
    }
}
