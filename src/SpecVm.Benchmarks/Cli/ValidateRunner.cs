using System.CommandLine;
using System.Globalization;
using SpecVm.Benchmarks.Reports;
using SpecVm.Faults;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Smp;
using SpecVm.Workloads;
using Spectre.Console;

namespace SpecVm.Benchmarks.Cli;

/// <summary>
/// The <c>validate</c> command (issue 13, validation 3): calibrates the <c>host</c> cost model, then runs page-fault1
/// and database-load-nowriter under every default strategy at 1..cores CPUs twice — measured on real threads and
/// predicted in virtual time, with the same workload sizes — and prints predicted against measured with pass or fail
/// (±20% on each value, ±10% on each strategy's ratio to mmap-lock). Writes validation.md and validation.json beside a
/// results.json and report of both modes. Exit code 3 when the validation fails, like a failed gate.
/// </summary>
internal static class ValidateRunner
{
    /// <summary>The validated workloads: anonymous faults alone, and the database's loaders without the writer.</summary>
    public static readonly string[] Workloads = ["page-fault1", "database-load-nowriter"];

    public static Command Create()
    {
        var output = new Option<string?>("--out", "-o") { Description = "Output directory. Default: results/validate-<UTC timestamp>." };
        var quick = new Option<bool>("--quick") { Description = "Short runs and one repeat (a smoke test; too noisy to validate anything)." };
        var allowDebug = new Option<bool>("--allow-debug") { Description = "Validate even in a Debug build (recorded; the calibration then measures the Debug build)." };
        var command = new Command("validate", "Predicted against measured on this machine: calibrate, then page-fault1 and database-load-nowriter, every default strategy, 1..cores CPUs, measured and predicted; pass within ±20% per value and ±10% per strategy ratio. Writes validation.md/.json and a report of both modes.")
        {
            output, quick, allowDebug,
        };
        command.SetAction(p => Run(
            p.GetValue(output) ?? Path.Combine("results", "validate-" + DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)),
            p.GetValue(quick),
            p.GetValue(allowDebug)));
        return command;
    }

    private static int Run(string outDir, bool quick, bool allowDebug)
    {
        CalibrateRunner.CheckBuild(allowDebug, "validate");
        ScaleOptions.EnsureWritable(outDir);
        int cores = Math.Min(Affinity.AllowedCores.Count, MachineOptions.MaxCpus - 1);
        var threads = Enumerable.Range(1, Math.Max(cores, 1)).ToList();
        var strategies = StrategyCatalog.DefaultNames.Select(n => StrategyCatalog.TryCreate(n)!).ToList();
        List<Workload> Loads() => Workloads.Select(n => WorkloadCatalog.TryCreate(n, ScaleOptions.VirtualMappingMib << 20, ScaleOptions.VirtualSliceMib << 20)!).ToList();

        return ScaleRunner.WithInterrupt(token =>
        {
            string? loadBefore = ValidationReport.ReadLoadAverage();
            CostModel calibration = CalibrateRunner.MeasureAndPrint(quick ? CalibrationSettings.Quick : CalibrationSettings.Full);
            File.WriteAllText(Path.Combine(outDir, VirtualModel.DefaultCalibrationFile), calibration.ToJson());
            Console.WriteLine();

            // Measured: the same workload sizes the prediction needs (4 MiB rounds, 2 MiB slices), short real windows.
            var measuredSettings = new ScaleSettings(
                Loads(), strategies, threads,
                quick ? TimeSpan.FromSeconds(0.02) : TimeSpan.FromSeconds(0.2),
                quick ? TimeSpan.FromSeconds(0.05) : TimeSpan.FromSeconds(0.5),
                quick ? 1 : 3, outDir, Oversubscribe: false)
            {
                MappingMib = ScaleOptions.VirtualMappingMib,
                SliceMib = ScaleOptions.VirtualSliceMib,
                AllowDebug = allowDebug,
            };
            ScalingResult? result = ScaleRunner.Execute(measuredSettings, token);
            if (result == null)
            {
                Console.Error.WriteLine("interrupted before any run finished: nothing measured, nothing written.");
                return ExitCodes.Interrupted;
            }

            ScaleRunner.Record(result.Settings, measuredSettings);
            string? loadAfter = ValidationReport.ReadLoadAverage();
            if (!token.IsCancellationRequested)
            {
                CostModel host = VirtualModel.Host(calibration);
                var vt = new VirtualTimeOptions { Model = host, Quantum = ScaleOptions.DefaultQuantum };
                ScaleSettings predictedSettings = measuredSettings with
                {
                    Workloads = Loads(),
                    Warmup = vt.Warmup,
                    Duration = vt.Duration,
                    Repeats = 1,
                    VirtualTime = vt,
                };
                if (ScaleRunner.Execute(predictedSettings, token) is ScalingResult predicted)
                {
                    ScaleRunner.Record(predicted.Settings, predictedSettings);
                    MainJob.Merge(result, predicted);
                }
            }

            ValidationReport validation = ValidationReport.From(result);
            validation.LoadAverage = loadBefore == null ? null : $"{loadBefore}, {loadAfter}";
            Print(validation);
            int code = ScaleRunner.Write(result, outDir, measuredSettings.Repeats, validation);
            Console.WriteLine($"  validation: {Path.Combine(outDir, ValidationReport.MarkdownFile)}");
            Console.WriteLine($"{(validation.Passed ? "PASSED" : "FAILED")}: {validation.Summary}.");
            return code != ExitCodes.Ok ? code : validation.Passed ? ExitCodes.Ok : ExitCodes.Regression;
        });
    }

    private static void Print(ValidationReport v)
    {
        var inv = CultureInfo.InvariantCulture;
        string Verdict(ValidationRow r) => r.Pass && r.RatioPass != false ? "pass" : "FAIL";
        string Band(ValidationRow r) => r.PredictedLow is double lo && r.PredictedHigh is double hi ? string.Create(inv, $"{lo:N0} - {hi:N0}") : "-";
        string Pct(double? x) => x is double d ? string.Create(inv, $"{d:+0.0;-0.0}%") : "-";
        string R(double? x) => x is double d ? d.ToString("0.000", inv) : "-";
        if (Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            Console.WriteLine($"{"workload",-24} {"strategy",-13} {"N",2} {"measured",12} {"predicted",12} {"band",-25} {"error",7} {"ratio m",8} {"ratio p",8} {"r.err",7} verdict");
            foreach (ValidationRow r in v.Rows)
            {
                Console.WriteLine(string.Create(inv, $"{r.Workload,-24} {r.Strategy,-13} {r.Threads,2} {r.Measured,12:N0} {r.Predicted,12:N0} {Band(r),-25} {Pct(r.ErrorPercent),7} {R(r.MeasuredRatio),8} {R(r.PredictedRatio),8} {Pct(r.RatioErrorPercent),7} {Verdict(r)}"));
            }

            return;
        }

        var table = new Table().AddColumns("workload", "strategy", "CPUs", "measured ops/s", "predicted ops/s", "band", "error", $"ratio to {v.Baseline} (measured)", "(predicted)", "ratio error", "verdict");
        foreach (ValidationRow r in v.Rows)
        {
            string verdict = Verdict(r);
            table.AddRow(
                r.Workload, r.Strategy, r.Threads.ToString(inv), r.Measured.ToString("N0", inv), r.Predicted.ToString("N0", inv), Band(r),
                Pct(r.ErrorPercent), R(r.MeasuredRatio), R(r.PredictedRatio), Pct(r.RatioErrorPercent), verdict == "pass" ? "[green]pass[/]" : "[red]FAIL[/]");
        }

        AnsiConsole.Write(table);
    }
}
