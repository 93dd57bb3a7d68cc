using System.Text.Json;
using SpecVm.Benchmarks.Cli;
using SpecVm.Faults;

namespace SpecVm.Tests.Cli;

/// <summary>The <c>paired</c> command: every ratio of the targets, measured, in the table and the JSON.</summary>
public sealed class PairedCommandTests
{
    [Fact]
    public void PairedMeasuresEachTargetRatioAndWritesThemAsJson()
    {
        using var dir = new TempDir();
        string json = Path.Combine(dir.Path, "paired.json");
        CliOutput o = CliProcess.Run(dir.Path, TimeSpan.FromSeconds(180), "paired", "--rounds", "5", "--allow-debug", "--json", json);
        Assert.True(o.ExitCode == ExitCodes.Ok, o.ToString());
        Assert.Contains("| TLB-hit write / native store |", o.Stdout);
        Assert.Contains("speculative / mmap-lock, anonymous write fault", o.Stdout);

        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(json));
        JsonElement[] ratios = [.. doc.RootElement.EnumerateArray()];
        Assert.Equal(2 + (2 * (StrategyCatalog.DefaultNames.Count - 1)), ratios.Length);
        Assert.All(ratios, r =>
        {
            Assert.True(r.GetProperty("median").GetDouble() > 0);
            Assert.True(r.GetProperty("q1").GetDouble() <= r.GetProperty("q3").GetDouble());
            Assert.Equal(5, r.GetProperty("rounds").GetInt32());
            Assert.Equal(0.0, r.GetProperty("numeratorBytesPerOp").GetDouble()); // Hot paths allocate nothing.
        });
    }

    [Fact]
    public void PairedRefusesTooFewRoundsAndAnUnknownCase()
    {
        using var dir = new TempDir();
        CliOutput few = CliProcess.Run(dir.Path, "paired", "--rounds", "2", "--allow-debug");
        Assert.True(few.ExitCode == ExitCodes.BadInput, few.ToString());
        Assert.Contains("--rounds", few.Stderr);
        CliOutput unknown = CliProcess.Run(dir.Path, "paired", "--case", "tlb", "--allow-debug");
        Assert.True(unknown.ExitCode == ExitCodes.BadInput, unknown.ToString());
        Assert.Contains("--case", unknown.Stderr);
    }

    [Fact]
    public void QuantilesInterpolateBetweenSortedValues()
    {
        double[] sorted = [1, 2, 3, 4, 5];
        Assert.Equal(3, PairedRatio.Quantile(sorted, 0.5));
        Assert.Equal(2, PairedRatio.Quantile(sorted, 0.25));
        Assert.Equal(1.5, PairedRatio.Quantile([1, 2], 0.5));
        PairedRatio r = PairedRatio.From("x", [2, 4, 6], [1, 2, 2], 0, 0, 1.0);
        Assert.Equal(2, r.Median); // Per-round ratios 2, 2, 3.
    }
}
