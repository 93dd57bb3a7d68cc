using System.Diagnostics;
using SpecVm.Benchmarks.Cli;
using SpecVm.Mm;
using SpecVm.Scaling;

namespace SpecVm.Tests.Cli;

/// <summary>
/// Each CLI command run once, as a child process, in a tiny configuration: a scale point, a comparison, a
/// BenchmarkDotNet dry job, an interrupt. CI builds the app through the test project's reference and runs these, so a
/// broken CLI or suite fails CI.
/// </summary>
public class CliSmokeTests
{
    private static readonly string[] TinyScale =
        ["scale", "-w", "page-fault1", "-s", "mmap-lock", "-t", "1", "-d", "0.05", "--warmup", "0", "-r", "2", "--mapping-mib", "4", "--allow-debug"];

    [Fact]
    public void ScaleMeasuresOnePointAndWritesAResultThatSaysHowItWasMeasured()
    {
        using var dir = new TempDir();
        string outDir = Path.Combine(dir.Path, "out");
        CliOutput o = CliProcess.Run(dir.Path, [.. TinyScale, "-o", outDir]);
        Assert.True(o.ExitCode == 0, o.ToString());
        ScalingResult r = ScalingResult.Load(Path.Combine(outDir, "results.json"));
        Assert.Equal(ScalingResult.CurrentSchemaVersion, r.SchemaVersion);
        Assert.False(r.Partial);
        Assert.Single(r.Points);
        Assert.Equal(2, r.Points[0].RepeatOpsPerSecond.Count);
        Assert.Equal(4, r.Settings.MappingMib);
        Assert.Equal(false, r.Settings.Verify);
        Assert.Equal("wall-clock", r.Settings.TimeMode);
        Assert.NotNull(r.Runtime);
        Assert.Equal(CliProcess.Configuration, r.Runtime.BuildConfiguration);
        Assert.Equal(!CliProcess.IsDebug, r.Runtime.JitOptimized);
        if (OperatingSystem.IsLinux())
        {
            Assert.False(string.IsNullOrEmpty(r.Machine.KernelRelease));
        }

        if (CliProcess.IsDebug)
        {
            Assert.Contains("warning: measuring a Debug build", o.Stderr);
        }

        // One CPU thread: nothing to warn about placement. Beside results.json, will-it-scale's runtest.py shape.
        Assert.Empty(r.Warnings);
        string[] wis = File.ReadAllLines(Path.Combine(outDir, "wis-page-fault1-mmap-lock.csv"));
        Assert.Equal("tasks,processes,processes_idle,threads,threads_idle,linear", wis[0]);
        Assert.Equal("0,0,100,0,100,0", wis[1]);
        Assert.Matches(@"^1,0,0\.00,[1-9][0-9]*,0\.00,[1-9][0-9]*$", Assert.Single(wis[2..]));
    }

    [Fact]
    public void ScaleWarnsBeforeMeasuringWhenCpuThreadsOutnumberTheCores()
    {
        // database-load at cores threads runs one CPU more (its writer): always one more than the process may use.
        int cores = SpecVm.Smp.Affinity.AllowedCores.Count;
        using var dir = new TempDir();
        CliOutput o = CliProcess.Run(dir.Path, "scale", "-w", "database-load", "-s", "mmap-lock", "-t", cores.ToString(System.Globalization.CultureInfo.InvariantCulture), "--dry-run", "--allow-debug");
        Assert.True(o.ExitCode == 0, o.ToString());
        Assert.Contains($"warning: database-load: {cores + 1} CPU threads ({cores} measured + 1 background) but this process may use {cores} core", o.Stderr);
    }

    [Fact]
    public void ScaleQuickPlansTheCuratedSubsetWithShortWindows()
    {
        using var dir = new TempDir();
        CliOutput o = CliProcess.Run(dir.Path, "scale", "--quick", "-t", "1", "--dry-run", "--allow-debug");
        Assert.True(o.ExitCode == 0, o.ToString());
        Assert.Contains("workloads database-load, page-fault1, tlb-flush1", o.Stdout);
        Assert.DoesNotContain("native", o.Stdout);
        // 3 workloads × 3 strategies × 1 thread count × 1 repeat, and page-fault1's physical floor.
        Assert.Contains("10 runs (1 of them the physical floor)", o.Stdout);
    }

    [Fact]
    public void ScaleMeasuresThePhysicalFloorUnlessNoFloor()
    {
        using var dir = new TempDir();
        CliOutput on = CliProcess.Run(dir.Path, "scale", "-w", "page-fault1,page-fault2", "-s", "mmap-lock", "-t", "1", "-r", "2", "--dry-run", "--allow-debug");
        Assert.True(on.ExitCode == 0, on.ToString());
        Assert.Contains("8 runs (4 of them the physical floor)", on.Stdout); // (2 points + a zeroing and a copying floor) × 2 repeats.

        CliOutput off = CliProcess.Run(dir.Path, "scale", "-w", "page-fault1,page-fault2", "-s", "mmap-lock", "-t", "1", "-r", "2", "--no-floor", "--dry-run", "--allow-debug");
        Assert.True(off.ExitCode == 0, off.ToString());
        Assert.Contains("4 runs (physical floor off)", off.Stdout);
        Assert.False(ScaleRunner.Options(Parse("scale -w page-fault1 --no-floor"), null).MeasureFloor);
        Assert.True(ScaleRunner.Options(Parse("scale -w page-fault1"), null).MeasureFloor);
    }

    [Fact]
    public void ScaleLockLayoutReachesTheAddressSpaceOptions()
    {
        Assert.Equal(LockLayout.Padded, ScaleRunner.Options(Parse("scale -w mmap2"), null).AddressSpaceOptions!.LockLayout);
        Assert.Equal(LockLayout.SharedLine, ScaleRunner.Options(Parse("scale -w mmap2 --lock-layout shared-line"), null).AddressSpaceOptions!.LockLayout);
        Assert.Equal(LockLayout.SharedLine, ScaleRunner.Options(Parse("scale -w mmap2 --lock-layout Shared-Line"), null).AddressSpaceOptions!.LockLayout);
        Assert.Equal(["padded", "shared-line"], MmLockLines.Names);
    }

    private static ScaleSettings Parse(string commandLine)
    {
        // The scale command's own options, read as the command reads them (no measuring).
        var options = ScaleOptions.Create();
        var command = new System.CommandLine.Command("scale");
        options.AddTo(command);
        return options.Read(command.Parse(commandLine.Split(' ')[1..]));
    }

    [Fact]
    public void ScaleInADebugBuildRefusesToMeasureWithoutAllowDebug()
    {
        if (!CliProcess.IsDebug)
        {
            return; // A Release build measures; the refusal only exists in a Debug build.
        }

        using var dir = new TempDir();
        CliOutput o = CliProcess.Run(dir.Path, "scale", "-w", "page-fault1", "-s", "mmap-lock", "-t", "1", "-d", "0.05", "-o", Path.Combine(dir.Path, "out"));
        Assert.True(o.ExitCode == ExitCodes.BadInput, o.ToString());
        Assert.Contains("--allow-debug", o.Stderr);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "out")));
    }

    [Fact]
    public void CompareOfTwoResultsShowsIntervalsAndFailsTheGateOnlyOnAClearRegression()
    {
        using var dir = new TempDir();
        string a = Path.Combine(dir.Path, "a.json"), b = Path.Combine(dir.Path, "b.json");
        Result([1000, 1010, 990, 1005]).Save(a);
        Result([500, 505, 495, 502]).Save(b);

        CliOutput o = CliProcess.Run(dir.Path, "compare", a, b);
        Assert.True(o.ExitCode == 0, o.ToString());
        Assert.Contains("slower", o.Stdout);
        Assert.Contains("0.50x", o.Stdout);

        CliOutput gate = CliProcess.Run(dir.Path, "compare", a, b, "--fail-on-regression", "10");
        Assert.True(gate.ExitCode == ExitCodes.Regression, gate.ToString());
        Assert.Contains("FAIL: 1 point(s) regressed by more than 10%", gate.Stderr);

        CliOutput same = CliProcess.Run(dir.Path, "compare", a, a, "--fail-on-regression", "10");
        Assert.True(same.ExitCode == 0, same.ToString());
        Assert.Contains("PASS", same.Stdout);
    }

    [Fact]
    public void CompareRefusesResultsMeasuredDifferentlyUnlessForced()
    {
        using var dir = new TempDir();
        string a = Path.Combine(dir.Path, "a.json"), b = Path.Combine(dir.Path, "b.json");
        Result([1000, 1010, 990]).Save(a);
        ScalingResult shorter = Result([1000, 1010]);
        shorter.Settings.DurationSeconds = 0.5;
        shorter.Save(b);

        CliOutput refused = CliProcess.Run(dir.Path, "compare", a, b);
        Assert.True(refused.ExitCode == ExitCodes.BadInput, refused.ToString());
        Assert.Contains("settings.durationSeconds differs: A 1.5, B 0.5", refused.Stderr);
        Assert.Contains("settings.repeats differs: A 3, B 2", refused.Stderr);
        Assert.Contains("--force", refused.Stderr);

        CliOutput forced = CliProcess.Run(dir.Path, "compare", a, b, "--force");
        Assert.True(forced.ExitCode == 0, forced.ToString());
        Assert.Contains("warning: settings.durationSeconds differs", forced.Stderr);
    }

    [Fact]
    public void CompareReadsTheCommittedVersionOneResults()
    {
        string results = Path.Combine(Packaging.RepoPaths.Root, "docs", "results");
        CliOutput o = CliProcess.Run(results, "compare", "2cpu-20261125-default", "2cpu-20261125-quiet");
        Assert.True(o.ExitCode == 0, o.ToString());
        Assert.Contains("A is schema version 1", o.Stderr);
        Assert.Contains("B/A [95% CI]", o.Stdout);
    }

    [Fact]
    public void BdnRunsOneTinyBenchmarkInADryInProcessJob()
    {
        using var dir = new TempDir();
        CliOutput o = CliProcess.Run(dir.Path, TimeSpan.FromSeconds(90), "bdn", "--allow-debug", "--filter", "*SyncBenchmarks.SeqCountRead*", "--job", "Dry", "--inProcess");
        Assert.True(o.ExitCode == 0, o.ToString());
        Assert.Contains("executed benchmarks: 1", o.Stdout);
    }

    [Fact]
    public void BdnListsTheSuitesAndTheReadmeFilterMatchesThem()
    {
        using var dir = new TempDir();
        CliOutput o = CliProcess.Run(dir.Path, "bdn", "--filter", "*", "--list", "flat");
        Assert.True(o.ExitCode == 0, o.ToString());
        Assert.Contains("SyncBenchmarks.SeqCountRead", o.Stdout);
    }

    [Theory]
    [InlineData("bdn --bogus", "bogus")]
    [InlineData("bdn --filter *NoSuchBenchmark*", "no benchmark matched --filter '*NoSuchBenchmark*'")]
    [InlineData("--filter *NoSuchBenchmark*", "no benchmark matched")]
    [InlineData("scale --bogus", "--bogus")]
    [InlineData("scale -t 0 --allow-debug", "--threads")]
    [InlineData("scale -t 1-4096 --oversubscribe --allow-debug", "--threads")]
    [InlineData("scale -d 0 --allow-debug", "--duration")]
    [InlineData("scale -d abc", "--duration")]
    [InlineData("scale -r 0 --allow-debug", "--repeats")]
    [InlineData("scale -w nope --allow-debug", "--workload")]
    [InlineData("scale -s nope --allow-debug", "--strategy")]
    [InlineData("scale --mapping-mib 0 --allow-debug", "--mapping-mib")]
    [InlineData("scale --writer-rate 0 --allow-debug", "--writer-rate")]
    [InlineData("scale --kernel 9.9 --allow-debug", "--kernel")]
    [InlineData("scale --lock-layout diagonal --allow-debug", "--lock-layout")]
    [InlineData("scale --thp sometimes --allow-debug", "--thp")]
    [InlineData("scale -w page-fault1 -s mmap-lock -t 1 --allow-debug --out /proc/specvm-cannot-write", "--out")]
    [InlineData("compare no-such-a no-such-b", "baseline 'no-such-a'")]
    [InlineData("compare a b --fail-on-regression 150", "--fail-on-regression")]
    [InlineData("stress --duration soon", "--duration")]
    public void EveryBadInputExitsTwoWithOneLineNamingTheOption(string commandLine, string named)
    {
        using var dir = new TempDir();
        CliOutput o = CliProcess.Run(dir.Path, commandLine.Split(' '));
        Assert.True(o.ExitCode == ExitCodes.BadInput, o.ToString());
        string[] errors = o.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error:", StringComparison.Ordinal)).ToArray();
        Assert.True(errors.Length == 1, o.ToString());
        Assert.Contains(named, errors[0]);
    }

    [Fact]
    public void CtrlCWritesThePointsMeasuredSoFarMarkedPartialAndExits130()
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // SIGINT is sent with kill(1).
        }

        using var dir = new TempDir();
        string outDir = Path.Combine(dir.Path, "out");
        using Process p = CliProcess.Start(dir.Path, "scale", "-w", "page-fault1", "-s", "mmap-lock", "-t", "1", "-d", "0.2", "--warmup", "0", "-r", "50", "--mapping-mib", "4", "--allow-debug", "-o", outDir);
        Task<string> stderr = p.StandardError.ReadToEndAsync();

        // Wait for the first finished run (redirected output prints one line per run), then interrupt.
        string? line;
        var stdout = new System.Text.StringBuilder();
        while ((line = p.StandardOutput.ReadLine()) != null && !line.StartsWith("[1/", StringComparison.Ordinal))
        {
            stdout.AppendLine(line);
        }

        Assert.NotNull(line);
        using (Process kill = Process.Start("kill", ["-INT", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            kill.WaitForExit();
        }

        stdout.Append(p.StandardOutput.ReadToEnd());
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(30)), "the interrupted run did not stop");
        var o = new CliOutput(p.ExitCode, stdout.ToString(), stderr.Result);
        Assert.True(o.ExitCode == ExitCodes.Interrupted, o.ToString());
        ScalingResult r = ScalingResult.Load(Path.Combine(outDir, "results.json"));
        Assert.True(r.Partial);
        Assert.Single(r.Points);
        Assert.InRange(r.Points[0].RepeatOpsPerSecond.Count, 1, 49);
        Assert.Contains("interrupted: partial result", o.Stderr);
    }

    private static ScalingResult Result(double[] repeats)
    {
        var r = new ScalingResult
        {
            Machine = new MachineInfo { CpuModel = "Test CPU", LogicalCores = 2, AllowedCores = 2 },
            Settings = new ScalingSettings { DurationSeconds = 1.5, WarmupSeconds = 0.5, Repeats = repeats.Length, ThreadCounts = [1] },
            Runtime = new RuntimeSettings { BuildConfiguration = "Release", JitOptimized = true },
        };
        r.Points.Add(new ScalingPoint
        {
            Workload = "page-fault1",
            Strategy = "mmap-lock",
            Threads = 1,
            OpsPerSecond = repeats.Average(),
            OpsPerSecondStdDev = 1,
            RepeatOpsPerSecond = [.. repeats],
        });
        return r;
    }
}
