using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// Writes a result's JSON, CSV, Markdown report and plots into one directory, and will-it-scale's runtest.py CSV per
/// test × strategy (<see cref="WillItScaleCsv"/>).
/// </summary>
internal static class ReportWriter
{
    public const string JsonFile = "results.json";
    public const string CsvFile = "results.csv";
    public const string MarkdownFile = "report.md";

    /// <summary>Writes everything (and the validation's files, when one ran with the result); returns the directory.</summary>
    public static string WriteAll(ScalingResult result, string dir, ValidationReport? validation = null)
    {
        Directory.CreateDirectory(dir);
        result.Save(Path.Combine(dir, JsonFile));
        if (validation != null)
        {
            File.WriteAllText(Path.Combine(dir, ValidationReport.JsonFile), validation.ToJson());
            File.WriteAllText(Path.Combine(dir, ValidationReport.MarkdownFile), validation.ToMarkdown(result));
        }

        File.WriteAllText(Path.Combine(dir, CsvFile), CsvReport.Build(result));
        WillItScaleCsv.WriteAll(result, dir);
        IReadOnlyList<PlotFile> plots;
        try
        {
            plots = PlotReport.WriteAll(result, dir);
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException)
        {
            // ScottPlot needs SkiaSharp's native library; without it, keep the numbers and say why there are no plots.
            Console.Error.WriteLine($"warning: plots skipped ({e.GetType().Name}: {e.Message})");
            plots = [];
        }

        File.WriteAllText(Path.Combine(dir, MarkdownFile), MarkdownReport.Build(result, plots, validation));
        return dir;
    }
}

/// <summary>A plot written to disk: what it shows and its file names (PNG and SVG, relative to the report).</summary>
internal sealed record PlotFile(string Title, string Png, string Svg);
