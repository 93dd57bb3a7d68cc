using System.Text.Json.Nodes;
using SpecVm.Scaling;
using SpecVm.Tests.Packaging;

namespace SpecVm.Tests.Cli;

/// <summary>results.json versions: the committed v1 results load; v2 says how it was measured; v3 adds predicted points; docs/results-schema.json covers every field written.</summary>
public class ResultSchemaTests
{
    public static TheoryData<string> CommittedResults()
    {
        var data = new TheoryData<string>();
        foreach (string f in Directory.GetFiles(Path.Combine(RepoPaths.Root, "docs", "results"), "results.json", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetRelativePath(RepoPaths.Root, f));
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(CommittedResults))]
    public void EveryCommittedResultLoadsAsTheVersionItWasWritten(string relativePath)
    {
        string path = Path.Combine(RepoPaths.Root, relativePath);
        JsonNode? written = JsonNode.Parse(File.ReadAllText(path))!.AsObject()["schemaVersion"];
        bool versioned = written != null && written.GetValue<int>() >= 2;
        ScalingResult r = ScalingResult.Load(path);
        Assert.NotEmpty(r.Points);
        Assert.False(r.Partial);
        Assert.All(r.Points, p => Assert.NotEmpty(p.RepeatOpsPerSecond));
        if (!versioned)
        {
            // Version 1 (or written before versions existed): read as version 1, with none of version 2's identity.
            Assert.Equal(1, r.SchemaVersion);
            Assert.Null(r.Runtime);
            Assert.Null(r.Settings.MappingMib);
        }
        else
        {
            Assert.InRange(r.SchemaVersion, 2, ScalingResult.CurrentSchemaVersion);
            Assert.NotNull(r.Runtime);
            Assert.Equal("Release", r.Runtime!.BuildConfiguration);
        }
    }

    [Fact]
    public void ADocumentWithoutSchemaVersionIsReadAsVersionOne()
    {
        JsonObject v1 = JsonNode.Parse(ScalingResultTestsSample().ToJson())!.AsObject();
        v1.Remove("schemaVersion");
        v1.Remove("runtime");
        ScalingResult r = ScalingResult.FromJson(v1.ToJsonString());
        Assert.Equal(1, r.SchemaVersion);
        Assert.Equal(2, r.Points.Count);
    }

    [Fact]
    public void AVersionFourDocumentWithoutFloorsLoadsAndOneWithThemKeepsThem()
    {
        // Floors are optional within version 4: a document written before them loads with none.
        JsonObject without = JsonNode.Parse(ScalingResultTestsSample().ToJson())!.AsObject();
        Assert.True(without.Remove("floors"));
        Assert.Null(ScalingResult.FromJson(without.ToJsonString()).Floors);

        ScalingResult with = ScalingResult.FromJson(ScalingResultTestsSample().ToJson());
        Assert.Equal(4, with.SchemaVersion);
        FloorPoint f = Assert.Single(with.Floors!);
        Assert.Equal(("w", 1, "zero", 4096L, 2.0), (f.Workload, f.Threads, f.Kind, f.BytesPerThread, f.OpsPerSecond));
        Assert.Equal([1.5, 2.5], f.RepeatOpsPerSecond);
        Assert.Same(f, with.FindFloor("w", 1));
    }

    [Fact]
    public void ANewerSchemaVersionIsRefusedWithInvalidData()
    {
        JsonObject future = JsonNode.Parse(ScalingResultTestsSample().ToJson())!.AsObject();
        future["schemaVersion"] = ScalingResult.CurrentSchemaVersion + 1;
        Assert.Throws<InvalidDataException>(() => ScalingResult.FromJson(future.ToJsonString()));
    }

    [Fact]
    public void TheCommittedJsonSchemaNamesTheCurrentVersionAndEveryFieldAResultWrites()
    {
        JsonObject schema = JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Root, "docs", "results-schema.json")))!.AsObject();
        Assert.Equal(ScalingResult.CurrentSchemaVersion, schema["properties"]!["schemaVersion"]!["const"]!.GetValue<int>());
        var missing = new List<string>();
        Walk(JsonNode.Parse(ScalingResultTestsSample().ToJson())!.AsObject(), schema, schema, "$", missing);
        Assert.True(missing.Count == 0, "not in docs/results-schema.json: " + string.Join(", ", missing));
    }

    /// <summary>A result with every optional field set, so that each is written.</summary>
    internal static ScalingResult ScalingResultTestsSample()
    {
        var r = new ScalingResult
        {
            Partial = true,
            CreatedUtc = DateTimeOffset.UnixEpoch,
            Machine = new MachineInfo { CpuModel = "c", LogicalCores = 2, PhysicalCores = 1, Sockets = 1, ThreadsPerCore = 2, KernelRelease = "6.1", AllowedCores = 2, Os = "o", DotNet = "d", MemoryBytes = 1, GitCommit = "g", GitDirty = false },
            Settings = new ScalingSettings
            {
                WarmupSeconds = 0.5, DurationSeconds = 1.5, Repeats = 2, Workloads = ["w"], Strategies = ["s"], ThreadCounts = [1], Oversubscribe = false,
                Verify = true, MappingMib = 128, SliceMib = 128, WriterOpsPerSecond = 1000, TimeMode = "wall-clock", VirtualTimePreset = "p", Seed = 1,
                CostModel = SpecVm.Simulation.CostModel.Preset("epyc-2s-128"), QuantumNs = 1000, Band = true,
            },
            Runtime = MachineInfoProbe.CollectRuntime(),
            Warnings = ["w"],
        };
        r.Floors = [new FloorPoint { Workload = "w", Threads = 1, Kind = "zero", BytesPerThread = 4096, OpsPerSecond = 2, OpsPerSecondStdDev = 0.5, RepeatOpsPerSecond = [1.5, 2.5] }];
        r.Failures = [new FailedPoint { Workload = "w", Strategy = "s", Threads = 64, Mode = "predicted", Error = "e" }];
        r.PredictedSettings = new ScalingSettings { TimeMode = "virtual", VirtualTimePreset = "host", QuantumNs = 1000, Band = false, ThreadCounts = [1, 2] };
        r.Runtime.Environment["DOTNET_TieredPGO"] = "1";
        for (int n = 1; n <= 2; n++)
        {
            r.Points.Add(new ScalingPoint
            {
                Workload = "w", Strategy = "s", Threads = n, OperationUnit = "fault", OpsPerSecond = 1, RepeatOpsPerSecond = [1, 1], PerThreadOpsPerSecond = [1],
                SpeculativeSuccessRate = 1, TlbHitRate = 1, Outcomes = [new("a", SpecVm.Mm.FaultOutcomeKind.Abort, 1)], Metrics = new() { ["m"] = 1 }, Counters = new() { ["c"] = 1 },
                Mode = "predicted", PredictedLow = 0.5, PredictedHigh = 1.5, Simulation = new() { ["hostSeconds"] = 1 },
                PerThreadMin = 1, PerThreadMax = 1, OpsPerCpuSecond = 1, Linear = n,
                WaitHistograms = new() { ["mmapRead"] = [1, 0, 0, 0, 0, 0] }, WaitSeconds = new() { ["mmapRead"] = 1e-6 },
            });
        }

        r.Usl = [new UslFit { Workload = "w", Strategy = "s", Points = 3, Sigma = 0.1, Kappa = 0.01, SingleThreadOpsPerSecond = 1, PeakThreads = 10, Note = "n", Mode = "predicted" }];
        return r;
    }

    private static void Walk(JsonNode? value, JsonNode? schema, JsonObject root, string path, List<string> missing)
    {
        if (schema?["$ref"] is JsonNode reference)
        {
            schema = root["$defs"]![reference.GetValue<string>()["#/$defs/".Length..]];
        }

        JsonNode? properties = schema == null ? null : schema["properties"];
        JsonNode? items = schema == null ? null : schema["items"];
        if (value is JsonObject obj && properties is JsonObject known)
        {
            foreach ((string key, JsonNode? child) in obj)
            {
                if (known[key] is JsonNode childSchema)
                {
                    Walk(child, childSchema, root, $"{path}.{key}", missing);
                }
                else
                {
                    missing.Add($"{path}.{key}");
                }
            }
        }
        else if (value is JsonArray array && items != null)
        {
            foreach (JsonNode? item in array)
            {
                Walk(item, items, root, path + "[]", missing);
            }
        }

        // Scalars and free-form dictionaries (additionalProperties) need no walk.
    }
}
