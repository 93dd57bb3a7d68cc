using System.Text.RegularExpressions;
using System.Xml.Linq;
using SpecVm.Smp;
using SpecVm.Tests.Guide;
using SpecVm.Tests.Packaging;
using Xunit.Abstractions;

namespace SpecVm.Tests.Architecture;

/// <summary>
/// The public surface of the SpecVm assembly is a decision (issue #12): what a user needs to run experiments, write a
/// workload or write a fault strategy is public, and everything else is internal. These tests hold that decision: the
/// reviewed list of public types below must match the assembly's exported types, every public member is documented,
/// and the built-in strategies compile from outside the assembly against the public surface alone (so a user can
/// write an equivalent of each).
/// </summary>
public sealed partial class PublicSurfaceTests(ITestOutputHelper output)
{
    /// <summary>
    /// Every public type of SpecVm, reviewed. Adding one to the assembly without adding it here fails
    /// <see cref="EveryPublicTypeIsReviewed"/>, and so does making one internal without removing it.
    /// </summary>
    private static readonly string[] ReviewedPublicTypes =
    [
        // Faults: the built-in strategies, their catalog, and the strategy author's toolkit.
        "SpecVm.Faults.FaultCore",
        "SpecVm.Faults.MmapLockStrategy",
        "SpecVm.Faults.PerVmaLockStrategy",
        "SpecVm.Faults.PreparedPage",
        "SpecVm.Faults.PteSlot",
        "SpecVm.Faults.SpeculativeMmSeqStrategy",
        "SpecVm.Faults.SpeculativeRefcountStrategy",
        "SpecVm.Faults.SpeculativeStrategy",
        "SpecVm.Faults.StrategyCatalog",

        // Memory: what a user observes of physical memory (size, the frame census) and its one error.
        "SpecVm.Memory.FrameCensus",
        "SpecVm.Memory.OutOfFramesException",
        "SpecVm.Memory.PhysicalMemory",

        // Mm: the address space, its VMAs (read-only), files, options, kernel profiles and the fault seam.
        "SpecVm.Mm.AccessResult",
        "SpecVm.Mm.AddressSpace",
        "SpecVm.Mm.AddressSpaceFullException",
        "SpecVm.Mm.AddressSpaceOptions",
        "SpecVm.Mm.Errno",
        "SpecVm.Mm.FaultOutcome",
        "SpecVm.Mm.FaultOutcomeKind",
        "SpecVm.Mm.FaultResult",
        "SpecVm.Mm.FaultStrategy",
        "SpecVm.Mm.ISystemCallError",
        "SpecVm.Mm.InvariantChecker",
        "SpecVm.Mm.InvariantViolationException",
        "SpecVm.Mm.KernelProfile",
        "SpecVm.Mm.LockLayout",
        "SpecVm.Mm.MappingKind",
        "SpecVm.Mm.PerVmaLockScope",
        "SpecVm.Mm.Protection",
        "SpecVm.Mm.SegmentationFaultException",
        "SpecVm.Mm.SimFile",
        "SpecVm.Mm.TransparentHugePageMode",
        "SpecVm.Mm.UnmappedRangeException",
        "SpecVm.Mm.Vma",
        "SpecVm.Mm.VmaIndex",
        "SpecVm.Mm.VmaInfo",
        "SpecVm.Mm.VmaReadLockResult",

        // Scaling: experiments, their results and reports' inputs.
        "SpecVm.Scaling.ComparisonRow",
        "SpecVm.Scaling.FailedPoint",
        "SpecVm.Scaling.FloorPoint",
        "SpecVm.Scaling.MachineInfo",
        "SpecVm.Scaling.MmLockStats",
        "SpecVm.Scaling.OutcomeCount",
        "SpecVm.Scaling.PlacementCheck",
        "SpecVm.Scaling.ResultComparer",
        "SpecVm.Scaling.RuntimeSettings",
        "SpecVm.Scaling.ScalingExperiment",
        "SpecVm.Scaling.ScalingOptions",
        "SpecVm.Scaling.ScalingPoint",
        "SpecVm.Scaling.ScalingProgress",
        "SpecVm.Scaling.ScalingResult",
        "SpecVm.Scaling.ScalingSettings",
        "SpecVm.Scaling.SharedLineOps",
        "SpecVm.Scaling.Usl",
        "SpecVm.Scaling.UslFit",

        // Simulation: virtual time's options, cost model and its one error.
        "SpecVm.Simulation.CostModel",
        "SpecVm.Simulation.SimulatedDeadlockException",
        "SpecVm.Simulation.VirtualTimeOptions",

        // Smp: the machine, its CPUs, their counters (the BenchmarkDotNet diagnoser reads them) and errors.
        "SpecVm.Smp.Affinity",
        "SpecVm.Smp.CounterSnapshot",
        "SpecVm.Smp.Cpu",
        "SpecVm.Smp.CpuAttachment",
        "SpecVm.Smp.CpuCounter",
        "SpecVm.Smp.CpuException",
        "SpecVm.Smp.HardLockupException",
        "SpecVm.Smp.Machine",
        "SpecVm.Smp.MachineOptions",
        "SpecVm.Smp.PinResult",
        "SpecVm.Smp.RegisteredCounter",
        "SpecVm.Smp.ShootdownTimeoutException",
        "SpecVm.Smp.WaitHistogram",
        "SpecVm.Smp.WaitKind",

        // Sync: SRCU's read side (a strategy's lockless lookup) and the error a sleeping wait throws.
        "SpecVm.Sync.HungTaskException",
        "SpecVm.Sync.Srcu",

        // Testing: the stress runner, for a strategy author's own strategy.
        "SpecVm.Testing.StressOptions",
        "SpecVm.Testing.StressProgress",
        "SpecVm.Testing.StressReport",
        "SpecVm.Testing.StressRun",

        // Workloads: the built-in ones, their base classes and catalog.
        "SpecVm.Workloads.Brk1",
        "SpecVm.Workloads.DatabaseLoad",
        "SpecVm.Workloads.Ebizzy",
        "SpecVm.Workloads.MadviseDontNeed1",
        "SpecVm.Workloads.MapAndInstall",
        "SpecVm.Workloads.Mmap1",
        "SpecVm.Workloads.Mmap2",
        "SpecVm.Workloads.MmapWorkload",
        "SpecVm.Workloads.NativeDatabaseLoad",
        "SpecVm.Workloads.NativePageFault",
        "SpecVm.Workloads.PageFault1",
        "SpecVm.Workloads.PageFault2",
        "SpecVm.Workloads.PageFault3",
        "SpecVm.Workloads.PageFault4",
        "SpecVm.Workloads.PageFaultWorkload",
        "SpecVm.Workloads.PageFaultZero",
        "SpecVm.Workloads.TlbFlush1",
        "SpecVm.Workloads.Workload",
        "SpecVm.Workloads.WorkloadCatalog",
        "SpecVm.Workloads.WorkloadMode",
    ];

    /// <summary>The built-in strategies, each in its own file: a user must be able to write each of them.</summary>
    private static readonly string[] BuiltInStrategyFiles =
    [
        "MmapLockStrategy.cs",
        "SpeculativeStrategy.cs",
        "PerVmaLockStrategy.cs",
        "SpeculativeMmSeqStrategy.cs",
        "SpeculativeRefcountStrategy.cs",
    ];

    [Fact]
    public void EveryPublicTypeIsReviewed()
    {
        string[] exported = typeof(Machine).Assembly.GetExportedTypes().Select(Name).Order(StringComparer.Ordinal).ToArray();
        output.WriteLine($"{exported.Length} public types");
        IReadOnlyList<string> problems = CompareWithReviewed(exported, ReviewedPublicTypes);
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void TheComparisonCatchesAPlantedExtraTypeAndAMissingOne()
    {
        // The checker must be able to fail: a type made public without review, and a reviewed type made internal.
        string[] planted = [.. ReviewedPublicTypes, "SpecVm.Paging.PageTable"];
        IReadOnlyList<string> added = CompareWithReviewed(planted, ReviewedPublicTypes);
        Assert.Single(added);
        Assert.Contains("SpecVm.Paging.PageTable", added[0], StringComparison.Ordinal);
        Assert.Contains("make it internal", added[0], StringComparison.Ordinal);

        IReadOnlyList<string> removed = CompareWithReviewed(ReviewedPublicTypes.Where(t => t != "SpecVm.Mm.Vma"), ReviewedPublicTypes);
        Assert.Single(removed);
        Assert.Contains("SpecVm.Mm.Vma", removed[0], StringComparison.Ordinal);

        Assert.Empty(CompareWithReviewed(ReviewedPublicTypes.Reverse(), ReviewedPublicTypes));
    }

    [Fact]
    public void EveryPublicTypeHasASummaryInTheShippedDocumentation()
    {
        // Members are checked by the build (CS1591 is an error: see the next test); this reads the file the package ships.
        string xmlPath = Path.ChangeExtension(typeof(Machine).Assembly.Location, ".xml");
        var documented = XDocument.Load(xmlPath).Descendants("member")
            .Where(m => m.Element("summary") is { } s && s.Value.Trim().Length > 0)
            .Select(m => (string)m.Attribute("name")!)
            .ToHashSet(StringComparer.Ordinal);
        string[] missing = typeof(Machine).Assembly.GetExportedTypes().Select(t => "T:" + Name(t)).Where(id => !documented.Contains(id)).ToArray();
        Assert.True(missing.Length == 0, "Public types without a <summary>: " + string.Join(", ", missing));
    }

    [Fact]
    public void TheBuildFailsOnAnUndocumentedPublicMember()
    {
        // CS1591 (missing XML comment for a publicly visible member) is what enforces docs on every public member; it is
        // reported only with GenerateDocumentationFile, and fails the build only as long as warnings are errors and
        // nothing silences it.
        string root = RepoPaths.Root;
        string props = File.ReadAllText(Path.Combine(root, "Directory.Build.props"));
        string project = File.ReadAllText(Path.Combine(root, "src", "SpecVm", "SpecVm.csproj"));
        Assert.Contains("<TreatWarningsAsErrors>true</TreatWarningsAsErrors>", props, StringComparison.Ordinal);
        Assert.Contains("<GenerateDocumentationFile>true</GenerateDocumentationFile>", project, StringComparison.Ordinal);
        foreach ((string path, string text) in new[]
                 {
                     ("Directory.Build.props", props),
                     ("src/SpecVm/SpecVm.csproj", project),
                     (".editorconfig", File.ReadAllText(Path.Combine(root, ".editorconfig"))),
                 })
        {
            Assert.True(SilencesCs1591(text) == null, $"{path} silences CS1591: {SilencesCs1591(text)}");
        }

        // The detector must be able to fail.
        Assert.NotNull(SilencesCs1591("<NoWarn>$(NoWarn);CS1591</NoWarn>"));
        Assert.NotNull(SilencesCs1591("dotnet_diagnostic.CS1591.severity = none"));
        Assert.NotNull(SilencesCs1591("<WarningsNotAsErrors>1591</WarningsNotAsErrors>"));
    }

    [Fact]
    public void EveryBuiltInStrategyCompilesFromOutsideTheAssembly()
    {
        // Each built-in strategy's file, moved to another namespace and compiled into another assembly (no
        // InternalsVisibleTo, no unsafe code, no DEBUG symbol: the interleaving hooks are Debug-only test seams), must
        // build against SpecVm's public surface alone, without a warning.
        string faults = Path.Combine(RepoPaths.Root, "src", "SpecVm", "Faults");
        var blocks = BuiltInStrategyFiles
            .Select(f => File.ReadAllText(Path.Combine(faults, f)).Replace("namespace SpecVm.Faults;", "using SpecVm.Faults;\n\nnamespace Outside.Faults;", StringComparison.Ordinal))
            .ToList();
        Assert.All(blocks, b => Assert.Contains("namespace Outside.Faults;", b, StringComparison.Ordinal));
        IReadOnlyList<MarkdownCSharp.CompiledProgram> compiled = MarkdownCSharp.Compile(blocks);
        Assert.True(compiled[0].Problems.Count == 0, "a built-in strategy needs more than the public surface:\n" + string.Join("\n", compiled[0].Problems));
    }

    [Fact]
    public void TheOutsideCompilationSeesNoInternals()
    {
        // The check above is worth something only if internals stay out of reach of the compilation it makes.
        const string UsesInternal = """
            using SpecVm.Mm;

            namespace Outside;

            public static class Probe
            {
                public static object Table(AddressSpace mm) => mm.PageTable;
            }
            """;
        IReadOnlyList<MarkdownCSharp.CompiledProgram> compiled = MarkdownCSharp.Compile([UsesInternal]);
        Assert.Contains(compiled[0].Problems, p => p.StartsWith("CS1061", StringComparison.Ordinal) || p.StartsWith("CS0122", StringComparison.Ordinal));
    }

    /// <summary>
    /// Differences between the exported types and the reviewed list, each a sentence that says what to do; empty when
    /// they match.
    /// </summary>
    internal static IReadOnlyList<string> CompareWithReviewed(IEnumerable<string> exported, IEnumerable<string> reviewed)
    {
        var actual = exported.ToHashSet(StringComparer.Ordinal);
        var listed = reviewed.ToHashSet(StringComparer.Ordinal);
        var problems = new List<string>();
        foreach (string added in actual.Except(listed).Order(StringComparer.Ordinal))
        {
            problems.Add($"{added} is public but not in the reviewed list. Public is what a user needs to run experiments, write a workload or write a fault strategy: if it is, add it to ReviewedPublicTypes in test/SpecVm.Tests/Architecture/PublicSurfaceTests.cs (and PublicAPI.Unshipped.txt); otherwise make it internal.");
        }

        foreach (string removed in listed.Except(actual).Order(StringComparer.Ordinal))
        {
            problems.Add($"{removed} is in the reviewed list but no longer public (made internal, renamed or removed): if that was intended, remove it from ReviewedPublicTypes in test/SpecVm.Tests/Architecture/PublicSurfaceTests.cs and say so in the change; otherwise make it public again.");
        }

        return problems;
    }

    /// <summary>The text that silences CS1591 in an MSBuild or .editorconfig file, or null.</summary>
    private static string? SilencesCs1591(string text)
    {
        Match m = Cs1591Silenced().Match(text);
        return m.Success ? m.Value : null;
    }

    /// <summary>A type's name as C# and the XML documentation write it (nested types with a dot).</summary>
    private static string Name(Type t) => t.FullName!.Replace('+', '.');

    [GeneratedRegex(@"<(NoWarn|WarningsNotAsErrors)>[^<]*(CS)?1591[^<]*</\1>|dotnet_diagnostic\.CS1591\.severity\s*=\s*(none|silent|suggestion)", RegexOptions.IgnoreCase)]
    private static partial Regex Cs1591Silenced();
}
