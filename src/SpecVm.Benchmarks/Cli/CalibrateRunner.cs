using System.CommandLine;
using System.Globalization;
using SpecVm.Scaling;
using SpecVm.Simulation;
using Spectre.Console;

namespace SpecVm.Benchmarks.Cli;

/// <summary>
/// The <c>calibrate</c> command: measures this machine's local costs (<see cref="Calibration"/>), prints each measured
/// constant, and writes the <c>host</c> cost model as JSON for <c>scale --virtual host --calibration FILE</c>.
/// </summary>
internal static class CalibrateRunner
{
    public static Command Create()
    {
        var output = new Option<string>("--out", "-o")
        {
            Description = $"Where to write the cost model (JSON). Default: {VirtualModel.DefaultCalibrationFile} in the current directory.",
            DefaultValueFactory = _ => VirtualModel.DefaultCalibrationFile,
        };
        var quick = new Option<bool>("--quick") { Description = "Short runs (a few seconds, noisier): for smoke tests." };
        var allowDebug = new Option<bool>("--allow-debug")
        {
            Description = "Calibrate even though this is a Debug build (its costs are about 3x a Release build's; the file says so).",
        };
        var command = new Command("calibrate", "Measure this machine's local costs (page zero and copy, TLB hit, VMA edit, fault, core-to-core transfer between two pinned cores) and write the `host` cost model as JSON, for scale --virtual host --calibration FILE.")
        {
            output, quick, allowDebug,
        };
        command.SetAction(p => Run(p.GetValue(output)!, p.GetValue(quick), p.GetValue(allowDebug)));
        return command;
    }

    private static int Run(string file, bool quick, bool allowDebug)
    {
        CheckBuild(allowDebug, "calibrate");
        string? dir = Path.GetDirectoryName(Path.GetFullPath(file));
        if (dir != null)
        {
            ScaleOptions.EnsureWritable(dir);
        }

        CostModel model = MeasureAndPrint(quick ? CalibrationSettings.Quick : CalibrationSettings.Full);
        File.WriteAllText(file, model.ToJson());
        Console.WriteLine($"Cost model written to {Path.GetFullPath(file)}; use it with: scale --virtual host --calibration {file}");
        return ExitCodes.Ok;
    }

    /// <summary>Refuses an unoptimised build unless allowed: its costs are not this machine's.</summary>
    internal static void CheckBuild(bool allowDebug, string command)
    {
        RuntimeSettings runtime = MachineInfoProbe.CollectRuntime();
        if (runtime.JitOptimized)
        {
            return;
        }

        if (!allowDebug)
        {
            throw new UsageException($"this is a {runtime.BuildConfiguration} build (unoptimised JIT, about 3x slower): {command} would measure the build, not the machine; rebuild with -c Release, or pass --allow-debug.");
        }

        Console.Error.WriteLine($"warning: {command} in a {runtime.BuildConfiguration} build (unoptimised JIT): the costs measured are about 3x a Release build's.");
    }

    /// <summary>Measures with progress lines and prints the table of measured constants.</summary>
    internal static CostModel MeasureAndPrint(CalibrationSettings settings)
    {
        Console.WriteLine("Calibrating the host cost model on this machine:");
        (CostModel model, List<CalibrationStep> steps) = Calibration.Measure(settings, what => Console.WriteLine($"  measuring {what}"));
        Print(steps);
        return model;
    }

    private static void Print(List<CalibrationStep> steps)
    {
        var inv = CultureInfo.InvariantCulture;
        if (Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            Console.WriteLine($"{"constant",-16} {"ns",10} {"built-in",10}  how");
            foreach (CalibrationStep s in steps)
            {
                Console.WriteLine(string.Create(inv, $"{s.Constant,-16} {s.Value,10:0.##} {s.BuiltIn,10:0.##}  {s.How}"));
            }

            return;
        }

        var table = new Table().AddColumns("constant", "ns (this machine)", "built-in ns", "how");
        foreach (CalibrationStep s in steps)
        {
            table.AddRow(s.Constant, s.Value.ToString("0.##", inv), s.BuiltIn.ToString("0.##", inv), Markup.Escape(s.How));
        }

        AnsiConsole.Write(table);
    }
}
