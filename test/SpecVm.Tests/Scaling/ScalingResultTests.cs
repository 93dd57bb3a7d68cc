using SpecVm.Mm;
using SpecVm.Scaling;

namespace SpecVm.Tests.Scaling;

public class ScalingResultTests
{
    internal static ScalingResult Sample(double scale = 1)
    {
        var r = new ScalingResult
        {
            CreatedUtc = new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero),
            Machine = new MachineInfo { CpuModel = "Test CPU", LogicalCores = 2, AllowedCores = 2, Os = "Linux", DotNet = ".NET 10", GitCommit = "abc" },
            Settings = new ScalingSettings { WarmupSeconds = 0.1, DurationSeconds = 0.2, Repeats = 1, ThreadCounts = [1, 2] },
        };
        foreach (string s in new[] { "mmap-lock", "speculative" })
        {
            for (int n = 1; n <= 2; n++)
            {
                r.Points.Add(new ScalingPoint
                {
                    Workload = "page-fault1",
                    Strategy = s,
                    Threads = n,
                    OpsPerSecond = 1000 * n * scale,
                    PerThreadOpsPerSecond = Enumerable.Repeat(1000 * scale, n).ToList(),
                    Outcomes = s == "speculative"
                        ? [new("attempt", FaultOutcomeKind.Attempt, 100), new("success", FaultOutcomeKind.Success, 99), new("abort: ptl-busy", FaultOutcomeKind.Abort, 1)]
                        : [],
                    Metrics = new() { ["mmapWriteHeldShare"] = 0.25 },
                });
            }
        }

        r.Usl = ScalingExperiment.FitAll(r.Points);
        return r;
    }

    [Fact]
    public void JsonRoundTripKeepsEveryField()
    {
        ScalingResult a = Sample();
        string json = a.ToJson();
        Assert.Contains($"\"schemaVersion\": {ScalingResult.CurrentSchemaVersion}", json);
        ScalingResult b = ScalingResult.FromJson(json);
        Assert.Equal(json, b.ToJson());
        Assert.Equal("Test CPU", b.Machine.CpuModel);
        Assert.Equal(4, b.Points.Count);
        Assert.Equal(0.99, b.Find("page-fault1", "speculative", 2)!.SuccessRate());
        Assert.Equal(new OutcomeCount("abort: ptl-busy", FaultOutcomeKind.Abort, 1), b.Find("page-fault1", "speculative", 1)!.Outcomes![2]);
        Assert.Empty(b.Find("page-fault1", "mmap-lock", 1)!.Outcomes!);
        Assert.Null(b.Points[0].AbortReasons);
        Assert.DoesNotContain("abortReasons", json, StringComparison.Ordinal);
        Assert.DoesNotContain("speculativeAttempts", json, StringComparison.Ordinal);
        Assert.Contains("too few points (2)", b.Usl[0].Note);
    }

    [Fact]
    public void AVersionThreeDocumentLoadsWithItsOutcomesRebuiltFromTheOldFields()
    {
        System.Text.Json.Nodes.JsonObject v3 = System.Text.Json.Nodes.JsonNode.Parse(Sample().ToJson())!.AsObject();
        v3["schemaVersion"] = 3;
        foreach (System.Text.Json.Nodes.JsonNode? point in v3["points"]!.AsArray())
        {
            System.Text.Json.Nodes.JsonObject p = point!.AsObject();
            p.Remove("outcomes");
            bool speculative = p["strategy"]!.GetValue<string>() == "speculative";
            p["speculativeAttempts"] = speculative ? 100 : 0;
            p["speculativeSuccesses"] = speculative ? 97 : 0;
            p["speculativeSuccessRate"] = speculative ? 0.97 : null;
            p["abortReasons"] = new System.Text.Json.Nodes.JsonObject { ["seq-changed"] = speculative ? 2 : 0, ["access-error"] = speculative ? 1 : 0 };
            p["vmaLock"] = new System.Text.Json.Nodes.JsonObject { ["success"] = 0, ["abort"] = 0, ["retry"] = 0, ["miss"] = 0 };
        }

        ScalingResult r = ScalingResult.FromJson(v3.ToJsonString());
        Assert.Equal(3, r.SchemaVersion);
        ScalingPoint spec = r.Find("page-fault1", "speculative", 2)!;
        Assert.Equal(
            [new("attempt", FaultOutcomeKind.Attempt, 100), new("success", FaultOutcomeKind.Success, 97), new("abort: seq-changed", FaultOutcomeKind.Abort, 2), new("access-error", FaultOutcomeKind.Other, 1)],
            spec.Outcomes!);
        Assert.Equal(0.97, spec.SuccessRate());
        Assert.Equal(2, spec.AbortReasons!["seq-changed"]); // The old fields stay readable.
        Assert.Empty(r.Find("page-fault1", "mmap-lock", 2)!.Outcomes!); // Nothing counted: no outcomes.
    }

    [Fact]
    public void GarbageIsRejectedWithInvalidData()
    {
        Assert.Throws<InvalidDataException>(() => ScalingResult.FromJson("{ not json"));
        Assert.Throws<InvalidDataException>(() => ScalingResult.FromJson("{}"));
        Assert.Throws<InvalidDataException>(() => ScalingResult.FromJson("{\"schemaVersion\": 99}"));
    }

    [Fact]
    public void CompareComputesRatiosAndMissingPoints()
    {
        ScalingResult a = Sample();
        ScalingResult b = Sample(1.5);
        b.Points.RemoveAll(p => p.Strategy == "mmap-lock" && p.Threads == 2);
        IReadOnlyList<ComparisonRow> rows = ResultComparer.Compare(a, b);
        Assert.Equal(4, rows.Count);
        ComparisonRow spec2 = rows.Single(r => r.Strategy == "speculative" && r.Threads == 2);
        Assert.Equal(1.5, spec2.Ratio!.Value, 9);
        ComparisonRow missing = rows.Single(r => r.Strategy == "mmap-lock" && r.Threads == 2);
        Assert.Null(missing.CandidateOpsPerSecond);
        Assert.Null(missing.Ratio);
        Assert.Equal(1.5, ResultComparer.GeometricMeanRatio(rows)!.Value, 9);
    }
}
