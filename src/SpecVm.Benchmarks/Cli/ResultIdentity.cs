using System.Globalization;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Cli;

/// <summary>How two results differ in what they measured and where: the warnings of <c>compare</c>.</summary>
internal static class ResultIdentity
{
    /// <summary>One difference: what, the two values, and whether it changes the measured workload.</summary>
    /// <param name="What">The field, as the JSON names it.</param>
    /// <param name="Baseline">A's value ("not recorded" for an older schema).</param>
    /// <param name="Candidate">B's value.</param>
    /// <param name="Blocking">True when the difference makes the ratios compare different experiments (settings,
    /// build); false for a different machine, a model variant, or a measurement against a prediction, which are
    /// legitimate things to compare.</param>
    /// <param name="Note">Why a non-blocking difference is compared anyway; null for the default wording.</param>
    public sealed record Difference(string What, string Baseline, string Candidate, bool Blocking, string? Note = null);

    /// <summary>The time mode of a measurement (and of every result before schema 2 recorded one).</summary>
    public const string WallClock = "wall-clock";

    /// <summary>The note on a comparison of a measurement with a prediction.</summary>
    public const string ModelNote = "one side is a model (a virtual-time prediction), the other a measurement: the ratio says how far the model is from this measurement, not that one build is faster";

    /// <summary>Every recorded difference between A and B; fields one side does not record are skipped.</summary>
    /// <remarks>
    /// A measurement against a prediction (time modes differ) is compared without <c>--force</c>, noted as such: the
    /// windows, repeats and oversubscription of the two modes are necessarily different and are not checked; the
    /// workload's own settings still are.
    /// </remarks>
    public static IReadOnlyList<Difference> Compare(ScalingResult a, ScalingResult b)
    {
        var list = new List<Difference>();
        void Check(string what, object? x, object? y, bool blocking, string? note = null)
        {
            string? sx = Text(x), sy = Text(y);
            if (sx != null && sy != null && sx != sy)
            {
                list.Add(new Difference(what, sx, sy, blocking, note));
            }
        }

        ScalingSettings sa = a.Settings, sb = b.Settings;
        string modeA = sa.TimeMode ?? WallClock, modeB = sb.TimeMode ?? WallClock;
        bool crossMode = modeA != modeB;
        Check("settings.timeMode", modeA, modeB, false, ModelNote);
        if (!crossMode)
        {
            Check("settings.durationSeconds", sa.DurationSeconds, sb.DurationSeconds, true);
            Check("settings.warmupSeconds", sa.WarmupSeconds, sb.WarmupSeconds, true);
            Check("settings.repeats", sa.Repeats, sb.Repeats, true);
            Check("settings.oversubscribe", sa.Oversubscribe, sb.Oversubscribe, true);
        }

        Check("settings.verify", sa.Verify, sb.Verify, true);
        Check("settings.mappingMib", sa.MappingMib, sb.MappingMib, true);
        Check("settings.sliceMib", sa.SliceMib, sb.SliceMib, true);
        Check("settings.writerOpsPerSecond", sa.WriterOpsPerSecond, sb.WriterOpsPerSecond, true);

        // Model variants: comparing them is the point (with and without targeted shootdowns, or the 4.14 munmap), so a
        // difference is noted, never refused.
        Check("settings.targetedShootdowns", sa.TargetedShootdowns, sb.TargetedShootdowns, false);
        Check("settings.downgradeOnUnmap", sa.DowngradeOnUnmap, sb.DowngradeOnUnmap, false);
        Check("settings.lockLayout", sa.LockLayout, sb.LockLayout, false);
        Check("settings.transparentHugePages", sa.TransparentHugePages ?? "never", sb.TransparentHugePages ?? "never", false);
        Check("settings.kernelProfile", sa.KernelProfile, sb.KernelProfile, false);
        Check("settings.seed", sa.Seed, sb.Seed, true);
        if (!crossMode)
        {
            // Two predictions with different models, quanta or bands: model variants, compared (that is what they are for).
            Check("settings.virtualTimePreset", sa.VirtualTimePreset, sb.VirtualTimePreset, false);
            Check("settings.quantumNs", sa.QuantumNs, sb.QuantumNs, false);
            Check("settings.band", sa.Band, sb.Band, false);
            Check("settings.costModel", sa.CostModel?.ToJson(), sb.CostModel?.ToJson(), false, "the cost models' constants differ (a different calibration or model file): compared anyway");
        }

        // The build changes what a measurement means, never a prediction (virtual time reads no host clock).
        if (a.Runtime is RuntimeSettings ra && b.Runtime is RuntimeSettings rb && modeA == WallClock && modeB == WallClock)
        {
            Check("runtime.buildConfiguration", ra.BuildConfiguration, rb.BuildConfiguration, true);
            Check("runtime.jitOptimized", ra.JitOptimized, rb.JitOptimized, true);
            Check("runtime.tieredCompilation", ra.TieredCompilation, rb.TieredCompilation, true);
            Check("runtime.tieredPgo", ra.TieredPgo, rb.TieredPgo, true);
            Check("runtime.quickJitForLoops", ra.QuickJitForLoops, rb.QuickJitForLoops, true);
            Check("runtime.serverGc", ra.ServerGc, rb.ServerGc, true);
            Check("runtime.concurrentGc", ra.ConcurrentGc, rb.ConcurrentGc, true);
        }

        MachineInfo ma = a.Machine, mb = b.Machine;
        Check("machine.cpuModel", ma.CpuModel, mb.CpuModel, false);
        Check("machine.logicalCores", ma.LogicalCores, mb.LogicalCores, false);
        Check("machine.allowedCores", ma.AllowedCores, mb.AllowedCores, false);
        Check("machine.threadsPerCore", ma.ThreadsPerCore, mb.ThreadsPerCore, false);
        Check("machine.kernelRelease", ma.KernelRelease, mb.KernelRelease, false);
        Check("machine.dotNet", ma.DotNet, mb.DotNet, false);
        return list;
    }

    private static string? Text(object? value) => value switch
    {
        null => null,
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString(),
    };
}
