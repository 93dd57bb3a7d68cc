using BenchmarkDotNet.Running;

namespace SpecVm.Benchmarks;

/// <summary>The <c>bdn</c> command: hands the remaining arguments to BenchmarkDotNet's switcher over every suite.</summary>
public static class BdnCommand
{
    /// <summary>Runs the BenchmarkDotNet suites selected by <paramref name="args"/> (BenchmarkDotNet's own options).</summary>
    /// <param name="args">BenchmarkDotNet arguments, e.g. <c>--filter *Machine* --job short</c>.</param>
    public static int Run(string[] args)
    {
        BenchmarkSwitcher.FromAssembly(typeof(BdnCommand).Assembly).Run(args);
        return 0;
    }
}
