using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using SpecVm.Scaling;
using SpecVm.Simulation;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// Predicted against measured on this machine (issue 13, validation 3): for every point a result holds in both modes,
/// the prediction's error, and each strategy's ratio to the baseline strategy measured and predicted. A point passes
/// within <see cref="AbsoluteTolerance"/>; a ratio within <see cref="RatioTolerance"/>. The tolerances are the issue's
/// and nothing here tunes a constant to meet them.
/// </summary>
internal sealed class ValidationReport
{
    public const string MarkdownFile = "validation.md";
    public const string JsonFile = "validation.json";

    /// <summary>A prediction passes when it is within this fraction of the measurement (±20%).</summary>
    public const double AbsoluteTolerance = 0.20;

    /// <summary>A predicted strategy ratio passes when it is within this fraction of the measured ratio (±10%).</summary>
    public const double RatioTolerance = 0.10;

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The strategy ratios are taken to (the result's first strategy).</summary>
    public string Baseline { get; init; } = string.Empty;

    /// <summary>One row per point present in both modes.</summary>
    public List<ValidationRow> Rows { get; init; } = [];

    /// <summary>The cost model the predictions used (the calibration of this run).</summary>
    public CostModel? CostModel { get; init; }

    /// <summary>The host's 1-minute load average before and after measuring ("1.2, 0.8"), where the OS tells it.</summary>
    public string? LoadAverage { get; set; }

    /// <summary>The 1-minute load average now, from /proc/loadavg; null where there is none.</summary>
    public static string? ReadLoadAverage()
    {
        try
        {
            return File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>True when every point and every ratio passed.</summary>
    public bool Passed => Rows.Count > 0 && Rows.All(r => r.Pass && r.RatioPass != false);

    /// <summary>Points and ratios that passed, in words.</summary>
    [JsonIgnore]
    public string Summary
    {
        get
        {
            int ratios = Rows.Count(r => r.RatioPass != null);
            return string.Create(Inv, $"{Rows.Count(r => r.Pass)} of {Rows.Count} predictions within ±{AbsoluteTolerance * 100:0}% of the measurement, {Rows.Count(r => r.RatioPass == true)} of {ratios} strategy ratios within ±{RatioTolerance * 100:0}%");
        }
    }

    /// <summary>The row of a predicted point, or null when the validation did not cover it.</summary>
    public ValidationRow? For(ScalingPoint p) =>
        Series.IsPredicted(p) ? Rows.Find(r => r.Workload == p.Workload && r.Strategy == p.Strategy && r.Threads == p.Threads) : null;

    /// <summary>Pairs every point <paramref name="r"/> holds in both modes.</summary>
    public static ValidationReport From(ScalingResult r)
    {
        string baseline = Series.Baseline(r) ?? string.Empty;
        var rows = new List<ValidationRow>();
        foreach (ScalingPoint m in r.Points.Where(p => !Series.IsPredicted(p) && !p.Native))
        {
            if (Series.Find(r, m.Workload, m.Strategy, m.Threads, predicted: true) is not ScalingPoint p || m.OpsPerSecond <= 0)
            {
                continue;
            }

            double error = (p.OpsPerSecond / m.OpsPerSecond) - 1;
            double? measuredRatio = null, predictedRatio = null, ratioError = null;
            if (m.Strategy != baseline
                && Series.Find(r, m.Workload, baseline, m.Threads, predicted: false) is { OpsPerSecond: > 0 } mb
                && Series.Find(r, m.Workload, baseline, m.Threads, predicted: true) is { OpsPerSecond: > 0 } pb)
            {
                measuredRatio = m.OpsPerSecond / mb.OpsPerSecond;
                predictedRatio = p.OpsPerSecond / pb.OpsPerSecond;
                ratioError = (predictedRatio / measuredRatio) - 1;
            }

            bool? inBand = p.PredictedLow is double lo && p.PredictedHigh is double hi ? m.OpsPerSecond >= lo && m.OpsPerSecond <= hi : null;
            rows.Add(new ValidationRow(
                m.Workload, m.Strategy, m.Threads, m.OpsPerSecond, m.OpsPerSecondStdDev, Series.Repeats(m),
                p.OpsPerSecond, p.PredictedLow, p.PredictedHigh, inBand, Math.Round(error * 100, 1), Math.Abs(error) <= AbsoluteTolerance,
                measuredRatio, predictedRatio, ratioError is double e ? Math.Round(e * 100, 1) : null, ratioError is double f ? Math.Abs(f) <= RatioTolerance : null));
        }

        return new ValidationReport { Baseline = baseline, Rows = rows, CostModel = Series.PredictedSettings(r)?.CostModel };
    }

    /// <summary>The JSON written to <see cref="JsonFile"/>.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Reads what <see cref="ToJson"/> wrote; throws <see cref="InvalidDataException"/> on anything else.</summary>
    public static ValidationReport FromJson(string json)
    {
        try
        {
            return JsonSerializer.Deserialize<ValidationReport>(json, JsonOptions) ?? throw new InvalidDataException("Not a validation (null).");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Not a validation: {e.Message}", e);
        }
    }

    /// <summary>The Markdown written to <see cref="MarkdownFile"/>.</summary>
    public string ToMarkdown(ScalingResult r)
    {
        var sb = new StringBuilder();
        MachineInfo m = r.Machine;
        ScalingSettings s = r.Settings;
        ScalingSettings? v = Series.PredictedSettings(r);
        sb.AppendLine("# Predicted against measured on this machine");
        sb.AppendLine();
        sb.AppendLine(Inv, $"- Machine: {m.CpuModel}; {m.AllowedCores} usable cores; {m.KernelRelease ?? m.Os}; {r.Runtime?.BuildConfiguration ?? "unknown"} build; commit {m.GitCommit ?? "unknown"}{(m.GitDirty == true ? " (with uncommitted changes)" : string.Empty)}; {r.CreatedUtc:u}");
        sb.AppendLine(Inv, $"- Measured: real threads pinned to cores, {s.WarmupSeconds:0.###} s warm-up, {s.DurationSeconds:0.###} s window, {s.Repeats} repeats (mean ± SD)");
        if (v != null)
        {
            sb.AppendLine(Inv, $"- Predicted: virtual time, cost model `{v.VirtualTimePreset}` calibrated on this machine in the same run ({ReportCalibrationLine(v.CostModel)}); {v.DurationSeconds * 1000:0.###} ms virtual window; band = uncertain constants at 0.5× and 1.5×");
        }

        sb.AppendLine(Inv, $"- Same workloads in both modes: page-fault mapping {s.MappingMib?.ToString(Inv) ?? "?"} MiB, database-load slice {s.SliceMib?.ToString(Inv) ?? "?"} MiB");
        sb.AppendLine(Inv, $"- Pass: prediction within ±{AbsoluteTolerance * 100:0}% of the measured mean; strategy ratio to {Baseline} within ±{RatioTolerance * 100:0}% of the measured ratio. Nothing was tuned to pass.");
        if (LoadAverage is { Length: > 0 } load)
        {
            sb.AppendLine(Inv, $"- Host load average (1 min) before and after measuring: {load} on {m.AllowedCores} cores. Real threads share their cores with everything else that runs; a load above the core count means the measured points, the 2-CPU ones above all, include time-sharing the model does not simulate.");
        }
        sb.AppendLine();
        sb.AppendLine(Inv, $"**{(Passed ? "PASSED" : "FAILED")}**: {Summary}.");
        sb.AppendLine();
        sb.AppendLine(Inv, $"| workload | strategy | CPUs | measured ops/s (± SD) | predicted ops/s [band] | error | measured in band | ratio to {Baseline}: measured | predicted | ratio error | verdict |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|");
        foreach (ValidationRow row in Rows)
        {
            string band = row.PredictedLow is double lo && row.PredictedHigh is double hi ? string.Create(Inv, $" [{lo:N0} – {hi:N0}]") : string.Empty;
            string verdict = row.Pass && row.RatioPass != false ? "pass" : string.Join(", ", new[] { row.Pass ? null : "value", row.RatioPass == false ? "ratio" : null }.OfType<string>()) + " FAIL";
            sb.AppendLine(Inv, $"| {row.Workload} | {row.Strategy} | {row.Threads} | {row.Measured:N0} ± {row.MeasuredSd:N0} | {row.Predicted:N0}{band} | {row.ErrorPercent:+0.0;-0.0}% | {(row.MeasuredInBand is bool b ? (b ? "yes" : "no") : "–")} | {Num(row.MeasuredRatio)} | {Num(row.PredictedRatio)} | {(row.RatioErrorPercent is double e ? string.Create(Inv, $"{e:+0.0;-0.0}%") : "–")} | {verdict} |");
        }

        sb.AppendLine();
        return sb.ToString();
    }

    private static string ReportCalibrationLine(CostModel? model) => model == null
        ? "no model recorded"
        : string.Create(Inv, $"fault {model.FaultNs:0} ns, TLB hit {model.TlbHitNs:0.0} ns, page zero {model.PageZeroNs:0} ns, VMA edit {model.VmaEditNs:0} ns, core-to-core {model.SameComplexNs:0} ns");

    private static string Num(double? v) => v is double x ? x.ToString("0.000", Inv) : "–";
}

/// <summary>One point in both modes.</summary>
/// <param name="Workload">Workload name.</param>
/// <param name="Strategy">Strategy name.</param>
/// <param name="Threads">CPUs.</param>
/// <param name="Measured">Measured ops/s (mean over repeats).</param>
/// <param name="MeasuredSd">Its standard deviation.</param>
/// <param name="Repeats">Measured repeats.</param>
/// <param name="Predicted">Predicted ops/s.</param>
/// <param name="PredictedLow">The band's low end, or null without a band.</param>
/// <param name="PredictedHigh">The band's high end.</param>
/// <param name="MeasuredInBand">True when the measurement lies inside the band; null without a band.</param>
/// <param name="ErrorPercent">(predicted / measured - 1) × 100.</param>
/// <param name="Pass">Within <see cref="ValidationReport.AbsoluteTolerance"/>.</param>
/// <param name="MeasuredRatio">Measured ops/s over the baseline strategy's; null for the baseline itself.</param>
/// <param name="PredictedRatio">The same, predicted.</param>
/// <param name="RatioErrorPercent">(predicted ratio / measured ratio - 1) × 100.</param>
/// <param name="RatioPass">Within <see cref="ValidationReport.RatioTolerance"/>; null for the baseline.</param>
internal sealed record ValidationRow(
    string Workload, string Strategy, int Threads, double Measured, double MeasuredSd, int Repeats,
    double Predicted, double? PredictedLow, double? PredictedHigh, bool? MeasuredInBand, double ErrorPercent, bool Pass,
    double? MeasuredRatio, double? PredictedRatio, double? RatioErrorPercent, bool? RatioPass);
