using SpecVm.Benchmarks.Reports;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Cli;

/// <summary>The <c>report</c> command: writes a results folder's report, CSV and plots again from its JSON.</summary>
internal static class ReportRunner
{
    public static int Run(string folder)
    {
        string json = Path.Combine(folder, ReportWriter.JsonFile);
        ScalingResult result;
        ValidationReport? validation = null;
        try
        {
            result = ScalingResult.Load(json);
            string v = Path.Combine(folder, ValidationReport.JsonFile);
            if (File.Exists(v))
            {
                validation = ValidationReport.FromJson(File.ReadAllText(v));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new UsageException($"report '{folder}': cannot read a result ({e.Message})");
        }

        ReportWriter.WriteAll(result, folder, validation);
        Console.WriteLine($"Rewrote {Path.Combine(folder, ReportWriter.MarkdownFile)}, {ReportWriter.CsvFile} and the plots{(validation != null ? $" (with {ValidationReport.JsonFile})" : string.Empty)}.");
        return ExitCodes.Ok;
    }
}
