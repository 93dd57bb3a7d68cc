using System.Text.RegularExpressions;
using SpecVm.Tests.Packaging;
using Xunit.Abstractions;

namespace SpecVm.Tests.Architecture;

/// <summary>
/// The library's namespaces form layers with no arrow back up: a namespace that reaches another (a <c>using</c>
/// directive, or a qualified name in code or a doc reference) must not be reached by it, directly or through others.
/// </summary>
public sealed partial class NamespaceLayeringTests(ITestOutputHelper output)
{
    private static readonly string[] Namespaces =
        ["Sync", "Smp", "Memory", "Paging", "Mm", "Faults", "Diagnostics", "Workloads", "Scaling", "Testing"];

    [Fact]
    public void NoNamespaceOfTheLibraryReachesOneThatReachesItBack()
    {
        Dictionary<string, HashSet<string>> graph = ReadGraph(Path.Combine(RepoPaths.Root, "src", "SpecVm"));
        foreach ((string from, HashSet<string> to) in graph.OrderBy(kv => kv.Key))
        {
            output.WriteLine($"{from} -> {string.Join(", ", to.Order())}");
        }

        List<string> cycles = FindCycles(graph);
        Assert.True(cycles.Count == 0, "Namespaces that reach each other: " + string.Join("; ", cycles));
    }

    [Fact]
    public void TheCycleFinderCatchesAPlantedCycle()
    {
        var planted = new Dictionary<string, HashSet<string>>
        {
            ["Mm"] = ["Paging", "Faults"],
            ["Faults"] = ["Mm"],
            ["Paging"] = ["Memory"],
            ["Memory"] = [],
        };
        Assert.Contains(FindCycles(planted), c => c.Contains("Mm") && c.Contains("Faults"));

        var longer = new Dictionary<string, HashSet<string>> { ["A"] = ["B"], ["B"] = ["C"], ["C"] = ["A"] };
        Assert.Single(FindCycles(longer));
        Assert.Empty(FindCycles(new Dictionary<string, HashSet<string>> { ["A"] = ["B"], ["B"] = [] }));
    }

    /// <summary>Namespace → the library namespaces its files reach (usings, and qualified names such as <c>Mm.Vma</c>).</summary>
    private static Dictionary<string, HashSet<string>> ReadGraph(string root)
    {
        var graph = new Dictionary<string, HashSet<string>>();
        foreach (string file in Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            {
                continue;
            }

            string text = File.ReadAllText(file);
            Match ns = NamespaceLine().Match(text);
            if (!ns.Success)
            {
                continue;
            }

            string from = ns.Groups[1].Value;
            HashSet<string> to = graph.TryGetValue(from, out HashSet<string>? set) ? set : graph[from] = [];
            foreach (Match m in UsingLine().Matches(text))
            {
                to.Add(m.Groups[1].Value);
            }

            string code = CodeAndCrefs(text);
            foreach (string other in Namespaces)
            {
                // Qualified references, "SpecVm.Mm.X" or "Mm.X", in code and in cref attributes: not "Mm" inside a
                // longer name ("MmapLock.X"), nor a member access ("machine.Memory.Frame", "System.Diagnostics.X").
                if (other != from && Regex.IsMatch(code, $@"(SpecVm\.|(?<![A-Za-z0-9_.])){other}\.[A-Z]"))
                {
                    to.Add(other);
                }
            }

            to.Remove(from);
        }

        return graph;
    }

    /// <summary>The code of a file without comment prose, keeping the cref attributes of its doc comments.</summary>
    private static string CodeAndCrefs(string text)
    {
        var sb = new System.Text.StringBuilder();
        foreach (string line in text.Split('\n'))
        {
            int comment = line.IndexOf("//", StringComparison.Ordinal);
            if (comment < 0)
            {
                sb.AppendLine(line);
                continue;
            }

            sb.AppendLine(line[..comment]);
            foreach (Match m in Regex.Matches(line[comment..], "cref=\"([^\"]+)\""))
            {
                sb.AppendLine(m.Groups[1].Value);
            }
        }

        return sb.ToString();
    }

    /// <summary>Each cycle found by a depth-first search, as "A -> B -> A".</summary>
    private static List<string> FindCycles(Dictionary<string, HashSet<string>> graph)
    {
        var cycles = new List<string>();
        var state = new Dictionary<string, int>(); // 0 new, 1 on the stack, 2 done
        var stack = new List<string>();

        void Visit(string node)
        {
            state[node] = 1;
            stack.Add(node);
            foreach (string next in graph.GetValueOrDefault(node, []).Order())
            {
                int s = state.GetValueOrDefault(next);
                if (s == 1)
                {
                    cycles.Add(string.Join(" -> ", stack.Skip(stack.IndexOf(next)).Append(next)));
                }
                else if (s == 0)
                {
                    Visit(next);
                }
            }

            stack.RemoveAt(stack.Count - 1);
            state[node] = 2;
        }

        foreach (string node in graph.Keys.Order())
        {
            if (state.GetValueOrDefault(node) == 0)
            {
                Visit(node);
            }
        }

        return cycles;
    }

    [GeneratedRegex(@"^namespace SpecVm\.([A-Za-z]+);", RegexOptions.Multiline)]
    private static partial Regex NamespaceLine();

    [GeneratedRegex(@"^using SpecVm\.([A-Za-z]+);", RegexOptions.Multiline)]
    private static partial Regex UsingLine();
}
