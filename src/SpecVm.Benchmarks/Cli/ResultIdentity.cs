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
    /// build, mode); false for a different machine, which is a legitimate thing to compare.</param>
    public sealed record Difference(string What, string Baseline, string Candidate, bool Blocking);

    /// <summary>Every recorded difference between A and B; fields one side does not record are skipped.</summary>
    public static IReadOnlyList<Difference> Compare(ScalingResult a, ScalingResult b)
    {
        var list = new List<Difference>();
        void Check(string what, object? x, object? y, bool blocking)
        {
            string? sx = Text(x), sy = Text(y);
            if (sx != null && sy != null && sx != sy)
            {
                list.Add(new Difference(what, sx, sy, blocking));
            }
        }

        ScalingSettings sa = a.Settings, sb = b.Settings;
        Check("settings.durationSeconds", sa.DurationSeconds, sb.DurationSeconds, true);
        Check("settings.warmupSeconds", sa.WarmupSeconds, sb.WarmupSeconds, true);
        Check("settings.repeats", sa.Repeats, sb.Repeats, true);
        Check("settings.oversubscribe", sa.Oversubscribe, sb.Oversubscribe, true);
        Check("settings.verify", sa.Verify, sb.Verify, true);
        Check("settings.mappingMib", sa.MappingMib, sb.MappingMib, true);
        Check("settings.sliceMib", sa.SliceMib, sb.SliceMib, true);
        Check("settings.writerOpsPerSecond", sa.WriterOpsPerSecond, sb.WriterOpsPerSecond, true);

        // Model variants: comparing them is the point (with and without targeted shootdowns, or the 4.14 munmap), so a
        // difference is noted, never refused.
        Check("settings.targetedShootdowns", sa.TargetedShootdowns, sb.TargetedShootdowns, false);
        Check("settings.downgradeOnUnmap", sa.DowngradeOnUnmap, sb.DowngradeOnUnmap, false);
        Check("settings.timeMode", sa.TimeMode ?? "wall-clock", sb.TimeMode ?? "wall-clock", true);
        Check("settings.virtualTimePreset", sa.VirtualTimePreset ?? "none", sb.VirtualTimePreset ?? "none", true);
        Check("settings.seed", sa.Seed, sb.Seed, true);
        if (a.Runtime is RuntimeSettings ra && b.Runtime is RuntimeSettings rb)
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
