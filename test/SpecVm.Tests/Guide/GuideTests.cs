using System.Text.RegularExpressions;
using SpecVm.Tests.Packaging;

namespace SpecVm.Tests.Guide;

/// <summary>Runs the guide's examples and checks that the guide shows exactly the code that runs.</summary>
public partial class GuideTests
{
    [Fact]
    public void EveryCodeBlockOfTheGuideIsCompiledHere()
    {
        string guide = File.ReadAllText(Path.Combine(RepoPaths.Root, "docs", "guide.md"));
        string examples = Normalize(File.ReadAllText(Path.Combine(RepoPaths.Root, "test", "SpecVm.Tests", "Guide", "GuideExamples.cs")));
        MatchCollection blocks = CSharpBlock().Matches(guide);
        Assert.True(blocks.Count >= 6, $"expected the guide's C# examples, found {blocks.Count}");
        foreach (Match block in blocks)
        {
            Assert.True(examples.Contains(Normalize(block.Groups[1].Value), StringComparison.Ordinal), $"guide block not found in GuideExamples.cs:\n{block.Groups[1].Value}");
        }
    }

    [Fact]
    public void TheMachineExampleRuns() => GuideExamples.MachineAndAddressSpace();

    [Fact]
    public void TheParallelExampleRuns() => GuideExamples.FaultFromEveryCpu();

    [Fact]
    public void TheFileExampleRuns() => GuideExamples.FileMappings();

    [Fact]
    public void TheCustomStrategyAndWorkloadRunInAnExperiment()
    {
        var result = GuideExamples.RunAnExperiment(TimeSpan.FromMilliseconds(150));
        Assert.Equal(3, result.Points.Count);
        Assert.All(result.Points, p => Assert.True(p.OpsPerSecond > 0, $"{p.Strategy}: no throughput"));
        Assert.Contains(result.Points, p => p.Strategy == "write-only-speculation");
    }

    /// <summary>Whitespace-insensitive comparison (the guide's blocks are dedented copies).</summary>
    private static string Normalize(string code) => Whitespace().Replace(code, " ").Trim();

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();
}
