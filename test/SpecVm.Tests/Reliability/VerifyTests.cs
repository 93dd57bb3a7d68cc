using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Scaling;
using SpecVm.Smp;
using SpecVm.Workloads;

namespace SpecVm.Tests.Reliability;

/// <summary><see cref="ScalingOptions.Verify"/>: the invariant checker after each run, before teardown.</summary>
public class VerifyTests
{
    private const long Small = 1L << 20;

    private static ScalingResult RunTiny(Workload w, params FaultStrategy[] strategies) =>
        new ScalingExperiment(new ScalingOptions
        {
            Workloads = [w],
            Strategies = strategies,
            ThreadCounts = [1, 2],
            Warmup = TimeSpan.FromMilliseconds(20),
            Duration = TimeSpan.FromMilliseconds(250), // Long enough for one operation on a loaded 2-core machine.
            Repeats = 1,
            Oversubscribe = true,
            Verify = true,
        }).Run();

    public static TheoryData<string> ModelWorkloads => ["page-fault1", "page-fault2", "page-fault3", "page-fault1-processes", "database-load", "ebizzy"];

    [Theory]
    [MemberData(nameof(ModelWorkloads))]
    public void VerifiedTinyRunsOfEveryModelWorkloadPass(string name)
    {
        Workload w = WorkloadCatalog.TryCreate(name, mappingBytes: Small, sliceBytes: Small)!;
        ScalingResult r = RunTiny(w, new SpeculativeStrategy(), new PerVmaLockStrategy());
        Assert.Equal(4, r.Points.Count);
        Assert.All(r.Points, p => Assert.True(p.OpsPerSecond > 0));
    }

    [Fact]
    public void EveryModelWorkloadExposesWhatItSetUpUntilTeardown()
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 2, MemoryBytes = 64L << 20 });
        var pf2 = new PageFault2(Small);
        pf2.Setup(machine, new MmapLockStrategy(), 2);
        Assert.Single(pf2.AddressSpaces); // Threads mode: one shared address space, one file per task.
        Assert.Equal(2, pf2.Files.Count());
        pf2.Teardown();
        Assert.Empty(pf2.AddressSpaces);
        Assert.Empty(pf2.Files);

        var db = new DatabaseLoad(Small);
        db.Setup(machine, new MmapLockStrategy(), 1);
        Assert.Single(db.AddressSpaces);
        Assert.Empty(db.Files);
        db.Teardown();
        Assert.Empty(db.AddressSpaces);
    }

    [Fact]
    public void AViolationFailsTheVerifiedPointWithAClearMessage()
    {
        var w = new HidesItsFile();
        InvalidOperationException e = Assert.Throws<InvalidOperationException>(() =>
            new ScalingExperiment(new ScalingOptions
            {
                Workloads = [w],
                Strategies = [new MmapLockStrategy()],
                ThreadCounts = [1],
                Warmup = TimeSpan.FromMilliseconds(10),
                Duration = TimeSpan.FromMilliseconds(20),
                Repeats = 1,
                Verify = true,
            }).Run());
        Assert.Contains("Verification failed after hides-its-file with mmap-lock at 1 threads", e.Message, StringComparison.Ordinal);
        Assert.True(w.TornDown, "the workload is still torn down after a failed verification");
    }

    /// <summary>Planted bug: page-cache frames of a file that <see cref="Workload.Files"/> does not report.</summary>
    private sealed class HidesItsFile : Workload
    {
        private AddressSpace? _mm;
        private SimFile? _file;

        public override string Name => "hides-its-file";

        public bool TornDown { get; private set; }

        public override long MemoryBytes(int threads) => 16L << 20;

        public override IEnumerable<AddressSpace> AddressSpaces => _mm == null ? [] : [_mm];

        public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
        {
            _mm = new AddressSpace(machine, strategy!);
            _file = new SimFile(machine, 16 * 4096);
            AddressSpace mm = _mm;
            SimFile file = _file;
            machine.Run(0, cpu =>
            {
                ulong a = mm.Map(cpu, 16 * 4096, Protection.ReadWrite, MappingKind.SharedFile, file);
                for (ulong p = 0; p < 16; p++)
                {
                    mm.Write(cpu, a + (p * 4096), (byte)1);
                }
            });
        }

        public override long RunOperationBatch(Cpu cpu, int task)
        {
            Thread.Sleep(1);
            return 1;
        }

        public override void Teardown()
        {
            _mm?.Dispose();
            _file?.Dispose();
            TornDown = true;
        }
    }
}
