using SpecVm.Benchmarks.Cli;
using SpecVm.Benchmarks.Reports;
using SpecVm.Scaling;
using SpecVm.Simulation;

namespace SpecVm.Tests.Cli;

/// <summary>
/// The virtual-time commands as a user runs them: <c>scale --virtual</c> (results, report and CSV mark every point
/// predicted), its bad inputs, <c>calibrate</c>'s cost-model file, <c>validate</c>'s files, <c>compare</c> of a
/// measurement with a prediction, and the validation table's pass/fail arithmetic. Small virtual windows keep each
/// run to a few seconds in a Debug build.
/// </summary>
public class VirtualTimeCliTests
{
    private static readonly string[] TinyVirtual =
        ["scale", "--virtual", "host", "-t", "1,4", "-w", "page-fault1", "-s", "mmap-lock", "--virtual-warmup-ms", "0.2", "--virtual-duration-ms", "0.6"];

    [Fact]
    public void ScaleThpAlwaysRecordsTheModeAndTheSpeculativeHugePageAborts()
    {
        using var dir = new TempDir();
        string outDir = Path.Combine(dir.Path, "out");
        CliOutput o = CliProcess.Run(dir.Path, "scale", "--virtual", "host", "--no-band", "-t", "1", "-w", "page-fault1", "-s", "mmap-lock,speculative", "--thp", "always",
            "--virtual-warmup-ms", "0.1", "--virtual-duration-ms", "0.5", "-o", outDir);
        Assert.True(o.ExitCode == 0, o.ToString());
        ScalingResult r = ScalingResult.Load(Path.Combine(outDir, ReportWriter.JsonFile));
        Assert.Equal("always", r.Settings.TransparentHugePages);
        ScalingPoint spec = Assert.Single(r.Points, p => p.Strategy == "speculative");
        Assert.True(spec.Outcomes!.Single(x => x.Name == "abort: huge-page").Count > 0);
        Assert.True(spec.Counters["ThpFaultAlloc"] > 0);
        Assert.Contains("transparent huge pages always", File.ReadAllText(Path.Combine(outDir, ReportWriter.MarkdownFile)));
    }

    [Fact]
    public void ScaleVirtualPredictsEveryPointAndTheReportSaysSo()
    {
        using var dir = new TempDir();
        string outDir = Path.Combine(dir.Path, "out");

        // No --allow-debug: a prediction reads no host clock, so a Debug build predicts what a Release build does.
        CliOutput o = CliProcess.Run(dir.Path, [.. TinyVirtual, "-o", outDir]);
        Assert.True(o.ExitCode == 0, o.ToString());
        ScalingResult r = ScalingResult.Load(Path.Combine(outDir, ReportWriter.JsonFile));
        Assert.Equal(ScalingResult.CurrentSchemaVersion, r.SchemaVersion);
        Assert.Equal("virtual", r.Settings.TimeMode);
        Assert.Equal("host", r.Settings.VirtualTimePreset);
        Assert.Equal(ScaleOptions.VirtualMappingMib, r.Settings.MappingMib);
        Assert.Equal(ScaleOptions.VirtualSliceMib, r.Settings.SliceMib);
        Assert.True(r.Settings.Band);
        Assert.NotNull(r.Settings.CostModel);
        Assert.Equal([1, 4], r.Points.Select(p => p.Threads));
        Assert.All(r.Points, p =>
        {
            Assert.Equal("predicted", p.Mode);
            Assert.NotNull(p.Simulation);
            Assert.InRange(p.OpsPerSecond, p.PredictedLow!.Value, p.PredictedHigh!.Value);
        });

        string report = File.ReadAllText(Path.Combine(outDir, ReportWriter.MarkdownFile));
        Assert.Contains("| CPUs (predicted) | mode |", report);
        Assert.Contains("| 4 | predicted (model) |", report);
        Assert.Contains("| page-fault1 | mmap-lock | 4 | predicted (model) |", report);
        Assert.DoesNotContain("validated on this machine)", report);
        string[] csv = File.ReadAllLines(Path.Combine(outDir, ReportWriter.CsvFile));
        Assert.EndsWith(",mode,predicted_low,predicted_high", csv[0]);
        Assert.All(csv.Skip(1), line => Assert.Contains(",predicted,", line));

        // `report` writes the same report again from results.json.
        File.Delete(Path.Combine(outDir, ReportWriter.MarkdownFile));
        CliOutput again = CliProcess.Run(dir.Path, "report", outDir);
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Equal(report, File.ReadAllText(Path.Combine(outDir, ReportWriter.MarkdownFile)));
    }

    [Fact]
    public void ANoBandRunIsStillPredictedAndAnExplicitMappingIsKept()
    {
        using var dir = new TempDir();
        string outDir = Path.Combine(dir.Path, "out");
        CliOutput o = CliProcess.Run(dir.Path, [.. TinyVirtual, "--no-band", "--mapping-mib", "2", "-o", outDir]);
        Assert.True(o.ExitCode == 0, o.ToString());
        ScalingResult r = ScalingResult.Load(Path.Combine(outDir, ReportWriter.JsonFile));
        Assert.Equal(2, r.Settings.MappingMib);
        Assert.False(r.Settings.Band);
        Assert.All(r.Points, p =>
        {
            Assert.Equal("predicted", p.Mode);
            Assert.Null(p.PredictedLow);
        });
    }

    [Theory]
    [InlineData("scale --virtual no-such-preset", "--virtual: 'no-such-preset' is neither a preset")]
    [InlineData("scale --virtual missing.json", "--virtual 'missing.json': cannot read the file")]
    [InlineData("scale --virtual bad.json", "--virtual 'bad.json' is not a usable cost model: Bad topology")]
    [InlineData("scale --virtual host --calibration bad.json", "--calibration 'bad.json' is not a usable cost model")]
    [InlineData("scale --virtual host -w native-page-fault1", "cannot run in virtual time")]
    [InlineData("scale --virtual host -w database-load -t 64", "at most 63 threads in virtual time")]
    [InlineData("scale --virtual host -d 2", "--duration does not apply with --virtual")]
    [InlineData("scale --virtual host --no-floor", "--no-floor does not apply with --virtual")]
    [InlineData("scale --virtual host --virtual-duration-ms 0", "--virtual-duration-ms")]
    [InlineData("scale --no-band", "--no-band applies only with --virtual")]
    [InlineData("calibrate --out /proc/specvm-cannot-write/c.json --allow-debug", "--out")]
    public void BadVirtualInputExitsTwoWithOneLineNamingTheProblem(string commandLine, string named)
    {
        using var dir = new TempDir();
        File.WriteAllText(Path.Combine(dir.Path, "bad.json"), """{ "sockets": 2, "coresPerSocket": 6, "coresPerComplex": 4 }""");
        CliOutput o = CliProcess.Run(dir.Path, commandLine.Split(' '));
        Assert.True(o.ExitCode == ExitCodes.BadInput, o.ToString());
        string[] errors = o.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error:", StringComparison.Ordinal)).ToArray();
        Assert.True(errors.Length == 1, o.ToString());
        Assert.Contains(named, errors[0]);
    }

    [Fact]
    public void CalibrateWritesACostModelThatTheLibraryAndScaleRead()
    {
        using var dir = new TempDir();
        string file = Path.Combine(dir.Path, "cal.json");
        CliOutput o = CliProcess.Run(dir.Path, "calibrate", "--quick", "--allow-debug", "--out", file);
        Assert.True(o.ExitCode == 0, o.ToString());
        foreach (string constant in (string[])[nameof(CostModel.PageZeroNs), nameof(CostModel.PageCopyNs), nameof(CostModel.SameComplexNs), nameof(CostModel.TlbHitNs), nameof(CostModel.VmaEditNs), nameof(CostModel.FaultNs)])
        {
            Assert.Contains(constant, o.Stdout);
        }

        CostModel m = CostModel.FromJson(File.ReadAllText(file));
        Assert.Equal("host", m.Name);
        Assert.True(m.PageZeroNs > 0 && m.PageCopyNs > 0 && m.TlbHitNs >= 0 && m.FaultNs >= 0, m.ToJson());
        Assert.Contains("calibrated", m.Source);

        // The file serves as --calibration for a preset and as a whole model.
        string outDir = Path.Combine(dir.Path, "out");
        CliOutput s = CliProcess.Run(dir.Path, "scale", "--virtual", "host", "--calibration", file, "-t", "1", "-w", "page-fault1", "-s", "mmap-lock", "--no-band", "--virtual-warmup-ms", "0.1", "--virtual-duration-ms", "0.3", "-o", outDir);
        Assert.True(s.ExitCode == 0, s.ToString());
        Assert.Equal(m.FaultNs, ScalingResult.Load(Path.Combine(outDir, ReportWriter.JsonFile)).Settings.CostModel!.FaultNs);
    }

    [Fact]
    public void ValidateWritesItsTableAndAReportThatLabelsTheCheckedPoints()
    {
        using var dir = new TempDir();
        string outDir = Path.Combine(dir.Path, "v");
        CliOutput o = CliProcess.Run(dir.Path, TimeSpan.FromSeconds(120), "validate", "--quick", "--allow-debug", "-o", outDir);

        // A quick validation on a shared machine may well fail (exit 3), and a point the simulation could not run is
        // recorded as a failure (exit 1); the files and labels must be there either way.
        Assert.True(o.ExitCode is ExitCodes.Ok or ExitCodes.Regression or ExitCodes.Failed, o.ToString());
        if (o.ExitCode == ExitCodes.Failed)
        {
            Assert.NotEmpty(ScalingResult.Load(Path.Combine(outDir, ReportWriter.JsonFile)).Failures!);
        }

        Assert.Matches("(PASSED|FAILED): ", o.Stdout);
        Assert.Contains("| page-fault1 | speculative | 1 |", File.ReadAllText(Path.Combine(outDir, ValidationReport.MarkdownFile)));
        Assert.True(File.Exists(Path.Combine(outDir, ValidationReport.JsonFile)));
        ScalingResult r = ScalingResult.Load(Path.Combine(outDir, ReportWriter.JsonFile));
        Assert.Contains(r.Points, p => p.Mode == "predicted");
        Assert.Contains(r.Points, p => p.Mode == "measured");
        Assert.Equal("virtual", r.PredictedSettings!.TimeMode);
        Assert.Contains("predicted (validated on this machine, error", File.ReadAllText(Path.Combine(outDir, ReportWriter.MarkdownFile)));
    }

    [Fact]
    public void CompareOfAMeasurementWithAPredictionPrintsTheRatioAndSaysOneSideIsAModel()
    {
        using var dir = new TempDir();
        string a = Path.Combine(dir.Path, "a.json"), b = Path.Combine(dir.Path, "b.json");
        Measured([1000, 1010, 990]).Save(a);
        Predicted(1500, 1200, 1800).Save(b);
        CliOutput o = CliProcess.Run(dir.Path, "compare", a, b);
        Assert.True(o.ExitCode == 0, o.ToString());
        Assert.Contains("1.50x", o.Stdout);
        Assert.Contains("one side is a model", o.Stdout);
        Assert.Contains("model", o.Stdout.Split('\n').Single(l => l.StartsWith("page-fault1", StringComparison.Ordinal)));
        Assert.Contains("settings.timeMode differs: A wall-clock, B virtual (one side is a model", o.Stderr);
    }

    [Fact]
    public void TheValidationTablePassesWithinTwentyPercentAndTenPercentOnRatios()
    {
        ScalingResult r = Measured([1000, 1000]);
        r.Points.Add(Point("speculative", 2000, measured: true));
        r.Points.Add(Point("mmap-lock", 1190, measured: false));     // +19%: passes
        r.Points.Add(Point("speculative", 2620, measured: false));   // +31%: fails; ratio 2.20 against 2.00: +10.1%, fails
        r.Settings.Strategies = ["mmap-lock", "speculative"];
        ValidationReport v = ValidationReport.From(r);
        Assert.Equal(2, v.Rows.Count);
        ValidationRow baseline = v.Rows.Single(x => x.Strategy == "mmap-lock");
        Assert.True(baseline.Pass);
        Assert.Null(baseline.RatioPass);
        ValidationRow spec = v.Rows.Single(x => x.Strategy == "speculative");
        Assert.False(spec.Pass);
        Assert.False(spec.RatioPass);
        Assert.Equal(31.0, spec.ErrorPercent);
        Assert.False(v.Passed);
        Assert.NotNull(v.For(r.Points[^1]));
        Assert.Null(v.For(r.Points[0]));   // a measured point has no validation row of its own
    }

    [Fact]
    public void APredictedPointThatFailsIsRecordedAndTheSweepGoesOn()
    {
        // A workload planted to fail on 4 CPUs: the 1- and 2-CPU points are predicted, the 4-CPU one is a recorded failure.
        var settings = new ScaleSettings([new FailsOnFourCpus()], [new SpecVm.Faults.MmapLockStrategy()], [1, 4, 2], TimeSpan.Zero, TimeSpan.FromMilliseconds(0.3), 1, "unused", false)
        {
            VirtualTime = new VirtualTimeOptions { Model = VirtualModel.Host(null), Band = false, Warmup = TimeSpan.Zero, Duration = TimeSpan.FromMilliseconds(0.3) },
        };
        ScalingResult r = ScaleRunner.Execute(settings, CancellationToken.None)!;
        Assert.Equal([1, 2], r.Points.Select(p => p.Threads).Order());
        Assert.All(r.Points, p => Assert.Equal("predicted", p.Mode));
        FailedPoint f = Assert.Single(r.Failures!);
        Assert.Equal((FailsOnFourCpus.Name4, "mmap-lock", 4, "predicted"), (f.Workload, f.Strategy, f.Threads, f.Mode));
        Assert.Contains("planted failure", f.Error);
        Assert.Contains("| 4 | predicted | The workload failed", MarkdownReport.Build(r, []));
    }

    [Fact]
    public void AResultCarriesItsCostModelThroughJson()
    {
        ScalingResult r = Predicted(1, 1, 1);
        r.Settings.CostModel = CostModel.Preset("xeon-2s-56");
        ScalingResult back = ScalingResult.FromJson(r.ToJson());
        Assert.Equal(r.Settings.CostModel.ToJson(), back.Settings.CostModel!.ToJson());
    }

    private static ScalingResult Measured(double[] repeats)
    {
        var r = new ScalingResult
        {
            Machine = new MachineInfo { CpuModel = "Test CPU", LogicalCores = 2, AllowedCores = 2 },
            Settings = new ScalingSettings { DurationSeconds = 1.5, WarmupSeconds = 0.5, Repeats = repeats.Length, ThreadCounts = [1], TimeMode = "wall-clock", MappingMib = 4 },
            Runtime = new RuntimeSettings { BuildConfiguration = "Release", JitOptimized = true },
        };
        r.Points.Add(new ScalingPoint { Workload = "page-fault1", Strategy = "mmap-lock", Threads = 1, Mode = "measured", OpsPerSecond = repeats.Average(), OpsPerSecondStdDev = 10, RepeatOpsPerSecond = [.. repeats] });
        return r;
    }

    private static ScalingResult Predicted(double ops, double low, double high)
    {
        var r = new ScalingResult
        {
            Machine = new MachineInfo { CpuModel = "Test CPU", LogicalCores = 2, AllowedCores = 2 },
            Settings = new ScalingSettings { DurationSeconds = 0.004, WarmupSeconds = 0.001, Repeats = 1, ThreadCounts = [1], TimeMode = "virtual", VirtualTimePreset = "host", MappingMib = 4, Band = true, QuantumNs = 1000 },
            Runtime = new RuntimeSettings { BuildConfiguration = "Debug", JitOptimized = false },
        };
        r.Points.Add(new ScalingPoint { Workload = "page-fault1", Strategy = "mmap-lock", Threads = 1, Mode = "predicted", OpsPerSecond = ops, PredictedLow = low, PredictedHigh = high, RepeatOpsPerSecond = [ops] });
        return r;
    }

    private static ScalingPoint Point(string strategy, double ops, bool measured) => new()
    {
        Workload = "page-fault1", Strategy = strategy, Threads = 1, Mode = measured ? "measured" : "predicted", OpsPerSecond = ops, RepeatOpsPerSecond = [ops],
    };

    /// <summary>page-fault1 with 1 MiB rounds, except that on 4 CPUs task 1's second batch throws.</summary>
    private sealed class FailsOnFourCpus : SpecVm.Workloads.Workload
    {
        public const string Name4 = "fails-on-four";
        private readonly SpecVm.Workloads.PageFault1 _inner = new(1L << 20);
        private int _threads;
        private int _batches;

        public override string Name => Name4;

        public override long MemoryBytes(int threads) => _inner.MemoryBytes(threads);

        public override void Setup(SpecVm.Smp.Machine machine, SpecVm.Mm.FaultStrategy? strategy, int threads)
        {
            _threads = threads;
            _batches = 0;
            _inner.Setup(machine, strategy, threads);
        }

        public override long RunOperationBatch(SpecVm.Smp.Cpu cpu, int task) =>
            _threads == 4 && task == 1 && ++_batches > 1 ? throw new InvalidOperationException("planted failure") : _inner.RunOperationBatch(cpu, task);

        public override void Teardown() => _inner.Teardown();
    }
}
