using SpecVm.Benchmarks.Reports;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Workloads;

namespace SpecVm.Benchmarks.Cli;

/// <summary>
/// The default comparison (the README's main job): the measured sweep, then — unless <c>--no-prediction</c> — a
/// calibration of the <c>host</c> cost model on this machine and a predicted sweep of the same model workloads at
/// <see cref="PredictedThreads"/> simulated CPUs, written into the same folder and results.json, so one report shows
/// the measured points and the predicted curves together.
/// </summary>
/// <remarks>
/// The prediction uses the <c>host</c> model: this machine's local costs and its measured core-to-core transfer, for
/// more cores like these (see <see cref="Calibration"/>). It overlays the measurements where they overlap (1..cores),
/// which a server preset (epyc-2s-128) would not: its transfer costs are another machine's. Its windows are
/// <see cref="Warmup"/> and <see cref="Window"/> of virtual time, with the page-fault mapping and database-load slice of
/// <c>scale --virtual</c>, and its quantum (<see cref="ScaleOptions.DefaultQuantum"/>); the sensitivity band is run up
/// to <see cref="BandMaxThreads"/> CPUs only: the short windows and the partial band keep the whole job within about
/// five minutes on two cores.
/// </remarks>
internal static class MainJob
{
    /// <summary>The simulated CPU counts of the predicted sweep.</summary>
    public static readonly int[] PredictedThreads = [1, 2, 4, 8, 16, 32, 60];

    /// <summary>The largest CPU count whose points carry a sensitivity band (each band costs two more runs of the point).</summary>
    public const int BandMaxThreads = 4;

    /// <summary>
    /// The predicted sweep's virtual warm-up and window: half the library's defaults (1 ms and 4 ms), because host
    /// time grows with simulated CPUs × virtual time and the sweep must fit in about 90 s on two busy cores.
    /// </summary>
    public static readonly TimeSpan Warmup = TimeSpan.FromMilliseconds(0.5), Window = TimeSpan.FromMilliseconds(2);

    public static int Run(ScaleSettings s)
    {
        if (!s.Predict || !s.Workloads.Any(w => !w.IsNative))
        {
            return ScaleRunner.Run(s);
        }

        if (s.DryRun)
        {
            int code = ScaleRunner.Run(s);
            foreach (ScaleSettings p in Prediction(s, VirtualModel.Host(null)))
            {
                Console.WriteLine($"dry run, then: {ScaleRunner.Header(p, new ScalingExperiment(ScaleRunner.Options(p, null)))}");
            }

            Console.WriteLine(s.CalibrationFile != null ? $"dry run: the prediction would read its calibration from {s.CalibrationFile}" : "dry run: the prediction would calibrate the host cost model first (about 10 s)");
            return code;
        }

        ScaleRunner.CheckBuild(s, MachineInfoProbe.CollectRuntime());
        ScaleOptions.EnsureWritable(s.OutDir);
        CostModel? fromFile = s.CalibrationFile == null ? null : VirtualModel.Read(s.CalibrationFile, "--calibration");
        return ScaleRunner.WithInterrupt(token =>
        {
            ScalingResult? result = ScaleRunner.Execute(s, token);
            if (result == null)
            {
                Console.Error.WriteLine("interrupted before any run finished: nothing measured, nothing written.");
                return ExitCodes.Interrupted;
            }

            ScaleRunner.Record(result.Settings, s);
            if (!token.IsCancellationRequested)
            {
                Console.WriteLine();
                CostModel calibration = fromFile ?? CalibrateRunner.MeasureAndPrint(CalibrationSettings.Full);
                File.WriteAllText(Path.Combine(s.OutDir, VirtualModel.DefaultCalibrationFile), calibration.ToJson());
                CostModel host = VirtualModel.Host(calibration);
                foreach (ScaleSettings p in Prediction(s, host))
                {
                    if (token.IsCancellationRequested)
                    {
                        result.Partial = true;
                        break;
                    }

                    ScalingResult? predicted;
                    try
                    {
                        predicted = ScaleRunner.Execute(p, token);
                    }
                    catch (InvalidOperationException e)
                    {
                        // A failed prediction (a simulated deadlock, say) must not cost the minutes of measurements.
                        Console.Error.WriteLine($"warning: the prediction failed ({e.Message}); writing the measured points and the predictions finished before it.");
                        break;
                    }

                    if (predicted != null)
                    {
                        ScaleRunner.Record(predicted.Settings, p);
                        Merge(result, predicted);
                    }
                }
            }

            return ScaleRunner.Write(result, s.OutDir, s.Repeats);
        });
    }

    /// <summary>
    /// Adds <paramref name="predicted"/>'s points, fits and settings to <paramref name="into"/>, a measured result
    /// (a second predicted part — the band-less large CPU counts — adds its points to the first's settings).
    /// </summary>
    internal static void Merge(ScalingResult into, ScalingResult predicted)
    {
        into.Points.AddRange(predicted.Points);
        if (into.PredictedSettings is ScalingSettings earlier)
        {
            earlier.ThreadCounts.AddRange(predicted.Settings.ThreadCounts);
            earlier.Band = earlier.Band == true || predicted.Settings.Band == true; // which points have one, each point says
        }
        else
        {
            into.PredictedSettings = predicted.Settings;
        }

        // Fit each predicted series over all its points, once they are all in.
        into.Usl.RemoveAll(f => f.Mode == Series.PredictedMode);
        foreach (UslFit f in ScalingExperiment.FitAll(into.Points.Where(Series.IsPredicted)))
        {
            f.Mode = Series.PredictedMode;
            into.Usl.Add(f);
        }

        if (predicted.Failures is { Count: > 0 } failures)
        {
            into.Failures = [.. into.Failures ?? [], .. failures];
        }

        into.Partial |= predicted.Partial;
        into.CreatedUtc = predicted.CreatedUtc;
    }

    /// <summary>The predicted sweep: with its band up to <see cref="BandMaxThreads"/> CPUs, without above.</summary>
    private static IEnumerable<ScaleSettings> Prediction(ScaleSettings s, CostModel model)
    {
        long mapping = s.MappingGiven ? s.MappingMib : ScaleOptions.VirtualMappingMib;
        long slice = s.SliceGiven ? s.SliceMib : ScaleOptions.VirtualSliceMib;
        var workloads = s.Workloads.Where(w => !w.IsNative)
            .Select(w => WorkloadCatalog.TryCreate(w.Name, mapping << 20, slice << 20, s.WriterOpsPerSecond)!)
            .ToList();
        foreach (bool band in (bool[])[true, false])
        {
            var threads = PredictedThreads.Where(n => band == n <= BandMaxThreads).ToList();
            var vt = new VirtualTimeOptions { Model = model, Band = band, Warmup = Warmup, Duration = Window, Quantum = ScaleOptions.DefaultQuantum };
            yield return s with
            {
                Workloads = workloads,
                Threads = threads,
                Warmup = vt.Warmup,
                Duration = vt.Duration,
                Repeats = 1,
                Oversubscribe = false,
                VirtualTime = vt,
                MappingMib = mapping,
                SliceMib = slice,
            };
        }
    }
}
