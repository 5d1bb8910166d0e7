// What esbuild's `file` loader gives for an imported asset: its URL in the bundle.
declare module "*.wasm" {
  const url: string;
  export default url;
}
declare module "*.safetensors" {
  const url: string;
  export default url;
}
