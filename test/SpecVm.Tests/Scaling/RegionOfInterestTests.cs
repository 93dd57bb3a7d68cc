using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Smp;
using SpecVm.Workloads;
using Xunit.Abstractions;

namespace SpecVm.Tests.Scaling;

/// <summary>
/// <see cref="Workload.HasRegionOfInterest"/>: a workload whose tasks set up on their own CPUs (map and unmap, then fault
/// their working set in) and only then mark their region of interest reports none of that setup — no faults, no waits —
/// in real threads and in virtual time, even with no warm-up to hide it; the harness with the wait for the marks
/// planted out reports the setup, so the test would catch a harness that forgot the marks.
/// </summary>
public sealed class RegionOfInterestTests(ITestOutputHelper output)
{
    /// <summary>Each task: 8 map-unmap pairs and 256 faults (setup), the mark, then rewrites of its pages (no faults).</summary>
    private sealed class SetUpThenRewrite(bool neverMark = false) : Workload
    {
        private const int Pages = 256;
        private const int PagesPerBatch = 32;
        private AddressSpace? _mm;
        private ulong[] _base = [];
        private int[] _faulted = [];

        public override string Name => "set-up-then-rewrite";

        public override bool HasRegionOfInterest => true;

        public override long MemoryBytes(int threads) => 64L << 20;

        public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
        {
            var mm = new AddressSpace(machine, strategy!, AddressSpaceOptions);
            _mm = mm;
            _base = new ulong[threads];
            _faulted = new int[threads];
            for (int i = 0; i < threads; i++)
            {
                _base[i] = machine.Run(0, cpu => mm.Map(cpu, Pages * 4096UL, Protection.ReadWrite));
            }
        }

        public override long RunOperationBatch(Cpu cpu, int task)
        {
            AddressSpace mm = _mm!;
            ulong b = _base[task];
            if (_faulted[task] < Pages)
            {
                // Setup, on the task's own CPU: mmap-lock write sections (waits between the tasks), then faults.
                if (_faulted[task] == 0)
                {
                    for (int i = 0; i < 8; i++)
                    {
                        ulong a = mm.Map(cpu, 64 << 10, Protection.Read);
                        mm.Unmap(cpu, a, 64 << 10);
                    }
                }

                for (int i = 0; i < PagesPerBatch; i++, _faulted[task]++)
                {
                    mm.Write(cpu, b + ((ulong)_faulted[task] * 4096), 1L);
                }

                if (_faulted[task] == Pages && !neverMark)
                {
                    BeginRegionOfInterest(cpu); // The batch ends here: the window's edge falls exactly at the mark.
                }

                return 0;
            }

            if (neverMark)
            {
                cpu.Sleep(TimeSpan.FromMilliseconds(1)); // Virtual time passes cheaply until the harness gives up on the mark.
                return 0;
            }

            for (int i = 0; i < Pages; i++)
            {
                mm.Write(cpu, b + ((ulong)i * 4096), (long)i); // Mapped already: TLB hits and walks, never a fault.
            }

            return Pages;
        }

        public override IEnumerable<AddressSpace> AddressSpaces => _mm == null ? [] : [_mm];

        public override void Teardown()
        {
            _mm?.Dispose();
            _mm = null;
        }
    }

    private static ScalingOptions Options(Workload w, int threads, bool virtualTime) => new()
    {
        Workloads = [w],
        Strategies = [StrategyCatalog.Create("mmap-lock")],
        ThreadCounts = [threads],
        Repeats = 1,
        Warmup = TimeSpan.Zero, // Nothing hides the setup but the region of interest.
        Duration = TimeSpan.FromMilliseconds(100),
        Verify = true,
        VirtualTime = virtualTime
            ? new VirtualTimeOptions { Band = false, Warmup = TimeSpan.FromMilliseconds(0.01), Duration = TimeSpan.FromMilliseconds(0.2) }
            : null,
    };

    private ScalingPoint Run(bool virtualTime, bool plantIgnore, int threads)
    {
        ScalingResult r = new ScalingExperiment(Options(new SetUpThenRewrite(), threads, virtualTime)) { PlantIgnoreRegionOfInterest = plantIgnore }.Run();
        ScalingPoint p = Assert.Single(r.Points);
        long waits = p.WaitHistograms!.Values.Sum(b => b.Sum());
        output.WriteLine($"{(virtualTime ? "virtual" : "real")}{(plantIgnore ? " (marks ignored)" : string.Empty)}: {p.OpsPerSecond:N0} ops/s, faults {p.Counters.GetValueOrDefault("Faults")}, "
            + $"mmap write acquisitions {p.Counters.GetValueOrDefault("MmapWriteAcquisitions")}, waits {waits}");
        return p;
    }

    [Theory]
    [InlineData(false, 2)]
    [InlineData(true, 4)]
    public void CountersAndWaitsCountFromTheMarkOn(bool virtualTime, int threads)
    {
        ScalingPoint p = Run(virtualTime, plantIgnore: false, threads);
        Assert.True(p.OpsPerSecond > 0);
        Assert.Equal(0, p.Counters.GetValueOrDefault("Faults"));
        Assert.Equal(0, p.Counters.GetValueOrDefault("MmapWriteAcquisitions"));
        Assert.All(p.WaitHistograms!, kv => Assert.True(kv.Value.Sum() == 0, $"{kv.Key} waits counted before the mark"));
        if (virtualTime)
        {
            // The line tally restarts at the window's opening, and no fault came after it.
            Assert.Null(p.LinesPerFault);
        }
    }

    [Theory]
    [InlineData(false, 2)]
    [InlineData(true, 4)]
    public void AHarnessThatIgnoresTheMarksIsCaught(bool virtualTime, int threads)
    {
        // The planted bug: the window opens after the warm-up (none) whatever the marks say; the setup shows up.
        ScalingPoint p = Run(virtualTime, plantIgnore: true, threads);
        Assert.True(p.Counters.GetValueOrDefault("Faults") > 0, "The setup's faults should have leaked into the window.");
        Assert.True(p.Counters.GetValueOrDefault("MmapWriteAcquisitions") > 0, "The setup's map and unmap should have leaked into the window.");
        if (virtualTime)
        {
            Assert.True(p.WaitHistograms!.Values.Sum(b => b.Sum()) > 0, "In virtual time the setup's write sections wait for each other.");
        }
    }

    [Fact]
    public void ATaskThatNeverMarksFailsTheRunNamingIt()
    {
        var e = Assert.Throws<InvalidOperationException>(() => new ScalingExperiment(Options(new SetUpThenRewrite(neverMark: true), 2, virtualTime: true)).Run());
        Assert.Contains("region of interest", e.Message, StringComparison.Ordinal);
        Assert.Contains("BeginRegionOfInterest", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AWorkloadWithoutARegionOfInterestIsMeasuredAsBefore()
    {
        // The default: no marks awaited (the built-in workloads), so the setup-free window opens after the warm-up.
        Assert.False(new PageFault1(4L << 20).HasRegionOfInterest);
        Assert.All(WorkloadCatalog.Names, n => Assert.False(WorkloadCatalog.TryCreate(n)?.HasRegionOfInterest ?? false, n));
    }
}
