internal static class BdnCommand { public static int Run(string[] args) { BenchmarkDotNet.Running.BenchmarkSwitcher.FromAssembly(typeof(BdnCommand).Assembly).Run(args); return 0; } }
