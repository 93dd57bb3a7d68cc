using System.CommandLine;
using System.Text.RegularExpressions;
using BenchmarkDotNet.ConsoleArguments;
using BenchmarkDotNet.Loggers;
using SpecVm.Benchmarks;
using SpecVm.Benchmarks.Cli;
using SpecVm.Tests.Packaging;

namespace SpecVm.Tests.Cli;

/// <summary>
/// Every command line of the README's "More commands" block (and its main job) goes through the real parser and,
/// where that is cheap, runs: scale as <c>--dry-run</c> (full validation against this machine's cores, no
/// measuring), compare on two committed results; bdn through BenchmarkDotNet's own parser.
/// </summary>
public partial class ReadmeCommandTests
{
    private const string Prefix = "dotnet run -c ";

    public static TheoryData<string> MoreCommands()
    {
        var data = new TheoryData<string>();
        foreach (string line in ReadmeBlock("## More commands"))
        {
            data.Add(line);
        }

        return data;
    }

    [Fact]
    public void TheMoreCommandsBlockHasTheTenCommands() => Assert.Equal(10, ReadmeBlock("## More commands").Count);

    [Theory]
    [MemberData(nameof(MoreCommands))]
    public void EachReadmeCommandParsesAndTheCheapOnesRunAsWritten(string line)
    {
        string[] args = AppArguments(line);
        if (args.Length > 0 && args[0] == "bdn")
        {
            var log = new AccumulationLogger();
            Assert.True(ConfigParser.Parse(BenchmarkDotNetArguments(args), log).isSuccess, log.GetLog());
            return;
        }

        ParseResult parsed = Commands.Build().Parse(args);
        Assert.True(parsed.Errors.Count == 0, string.Join("; ", parsed.Errors.Select(e => e.Message)));
        switch (args.FirstOrDefault())
        {
            case "scale":
                Assert.Equal(ExitCodes.Ok, Commands.Build().Parse([.. args, "--dry-run"]).Invoke(NoHandler));
                break;
            case "compare":
                string results = Path.Combine(RepoPaths.Root, "docs", "results");
                string[] real = [args[0], Path.Combine(results, "2cpu-20261125-default"), Path.Combine(results, "2cpu-20261125-quiet"), .. args[3..]];
                Assert.Equal(ExitCodes.Ok, Commands.Build().Parse(real).Invoke(NoHandler));
                break;
            case "--help":
                Assert.Equal(ExitCodes.Ok, parsed.Invoke(NoHandler));
                break;
            default:
                break; // stress, calibrate, validate: parsed only (minutes of measuring).
        }
    }

    [Fact]
    public void TheMainJobPlansTheDefaultComparisonOnThisMachine()
    {
        string main = ReadmeBlock("## Two commands").Single(l => l.Contains("--project src/SpecVm.Benchmarks", StringComparison.Ordinal));
        string[] args = AppArguments(main);
        Assert.Empty(args);
        Assert.Equal(ExitCodes.Ok, Commands.Build().Parse(["--dry-run"]).Invoke(NoHandler));
    }

    [Fact]
    public void EveryBdnCommandLineInTheDocsParsesWithBenchmarkDotNetsParser()
    {
        var lines = Directory.GetFiles(Path.Combine(RepoPaths.Root, "docs"), "*.md")
            .SelectMany(File.ReadAllLines)
            .Select(l => l.Trim())
            .Where(l => l.StartsWith(Prefix, StringComparison.Ordinal) && l.Contains("-- bdn ", StringComparison.Ordinal))
            .ToList();
        Assert.NotEmpty(lines);
        Assert.All(lines, line =>
        {
            string[] args = AppArguments(line);
            var log = new AccumulationLogger();
            Assert.True(ConfigParser.Parse(BenchmarkDotNetArguments(args), log).isSuccess, $"{line}\n{log.GetLog()}");
        });
    }

    private static InvocationConfiguration NoHandler => new() { EnableDefaultExceptionHandler = false };

    /// <summary>What <c>bdn</c> hands BenchmarkDotNet: its arguments without our own two options.</summary>
    private static string[] BenchmarkDotNetArguments(string[] args) =>
        args[1..].Where(a => a is not (BdnCommand.AllowDebugOption or BdnCommand.CountersOption)).ToArray();

    /// <summary>The app's arguments in a README line: after <c>--</c>, split as sh would (single quotes, # comments).</summary>
    private static string[] AppArguments(string line)
    {
        Assert.StartsWith(Prefix, line);
        int dashes = line.IndexOf(" -- ", StringComparison.Ordinal);
        string rest = dashes < 0 ? string.Empty : line[(dashes + 4)..];
        var args = new List<string>();
        foreach (Match m in ShellWord().Matches(rest))
        {
            if (m.Value.StartsWith('#'))
            {
                break;
            }

            args.Add(m.Groups["q"].Success ? m.Groups["q"].Value : m.Value);
        }

        return [.. args];
    }

    /// <summary>The <c>dotnet run</c> lines of the first sh block after <paramref name="heading"/>.</summary>
    private static List<string> ReadmeBlock(string heading)
    {
        string readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        int start = readme.IndexOf(heading, StringComparison.Ordinal);
        Assert.True(start >= 0, $"README has no '{heading}'");
        int open = readme.IndexOf("```sh", start, StringComparison.Ordinal);
        int close = readme.IndexOf("```", open + 5, StringComparison.Ordinal);
        return readme[(open + 5)..close].Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => l.StartsWith(Prefix, StringComparison.Ordinal) && l.Contains("src/SpecVm.Benchmarks", StringComparison.Ordinal))
            .ToList();
    }

    [GeneratedRegex(@"'(?<q>[^']*)'|[^\s']+")]
    private static partial Regex ShellWord();
}
