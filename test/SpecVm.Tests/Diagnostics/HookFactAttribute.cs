using SpecVm.Smp;

namespace SpecVm.Tests.Diagnostics;

/// <summary>Why a hook-dependent test is skipped: the SpecVm build under test does not call interleaving hooks.</summary>
internal static class HookSkip
{
    /// <summary>The skip reason, or null when hooks are compiled in (Debug builds of SpecVm).</summary>
    public static string? Reason => InterleavingHooks.CompiledIn
        ? null
        : "Needs interleaving hooks, which only Debug builds of SpecVm call (the Release package pays nothing for them); CI runs the Debug build, where this test runs.";
}

/// <summary>A fact that drives the protocol through interleaving hooks: skipped, with the reason, in Release builds.</summary>
public sealed class HookFactAttribute : FactAttribute
{
    /// <summary>Creates the attribute; sets <see cref="FactAttribute.Skip"/> when hooks are not compiled in.</summary>
    public HookFactAttribute() => Skip = HookSkip.Reason!;
}

/// <summary>A theory that drives the protocol through interleaving hooks: skipped, with the reason, in Release builds.</summary>
public sealed class HookTheoryAttribute : TheoryAttribute
{
    /// <summary>Creates the attribute; sets <see cref="FactAttribute.Skip"/> when hooks are not compiled in.</summary>
    public HookTheoryAttribute() => Skip = HookSkip.Reason!;
}
