using SpecVm.Tests.Packaging;
using Xunit.Abstractions;

namespace SpecVm.Tests.Guide;

/// <summary>
/// The C# blocks of docs/guide.md and of the package README are the code that runs: extracted from the Markdown,
/// compiled as pasted (see <see cref="MarkdownCSharp"/>) and run, so the documents cannot drift from working code.
/// </summary>
public class GuideTests(ITestOutputHelper output)
{
    private static readonly string GuidePath = Path.Combine(RepoPaths.Root, "docs", "guide.md");
    private static readonly string PackageReadmePath = Path.Combine(RepoPaths.Root, "src", "SpecVm", "PACKAGE.md");

    [Fact]
    public void EveryCSharpBlockOfTheGuideCompilesAsPastedAndRuns()
    {
        IReadOnlyList<string> blocks = MarkdownCSharp.Blocks(GuidePath);
        Assert.True(blocks.Count >= 6, $"expected the guide's C# examples, found {blocks.Count}");
        string printed = CompileAndRunAll(blocks);

        // What the guide's comments say each example prints.
        Assert.Contains("SegmentationFault", printed);
        Assert.Contains("hEllo", printed);
        Assert.Contains("slice-toucher write-only-speculation x1", printed);
        Assert.Contains("vma lock 1, mmap lock 1", printed);
        Assert.Contains("time mode: virtual, cost model epyc-2s-128", printed);
        Assert.Contains("slice-toucher speculative on 8 simulated CPUs", printed);
        Assert.Contains("kernel 4.14-spf: munmap downgrade False, LRU batch 14", printed);
    }

    [Fact]
    public void EveryCSharpBlockOfThePackageReadmeCompilesAsPastedAndRuns()
    {
        IReadOnlyList<string> blocks = MarkdownCSharp.Blocks(PackageReadmePath);
        Assert.True(blocks.Count >= 2, $"expected the package README's C# examples, found {blocks.Count}");
        string printed = CompileAndRunAll(blocks);
        Assert.Contains("read 42", printed);
        Assert.Contains("page-fault1 per-vma-lock x1", printed);
    }

    [Fact]
    public void ABlockMissingAUsingLineFailsToCompile()
    {
        // The checker must be able to fail: the guide's first block without its `using SpecVm.Smp;`.
        string block = MarkdownCSharp.Blocks(GuidePath)[0];
        Assert.Contains("using SpecVm.Smp;\n", block);
        var compiled = MarkdownCSharp.Compile([block.Replace("using SpecVm.Smp;\n", string.Empty, StringComparison.Ordinal)]);
        Assert.Contains(compiled[0].Problems, p => p.StartsWith("CS0246", StringComparison.Ordinal));
    }

    private string CompileAndRunAll(IReadOnlyList<string> blocks)
    {
        var printed = new System.Text.StringBuilder();
        foreach (MarkdownCSharp.CompiledProgram program in MarkdownCSharp.Compile(blocks))
        {
            Assert.True(program.Problems.Count == 0, $"block does not compile cleanly as pasted:\n{string.Join("\n", program.Problems)}\n---\n{program.Code}");
            string text = program.Run();
            output.WriteLine(text);
            printed.Append(text);
        }

        return printed.ToString();
    }
}
