//! gRPC reflection for the tandem binaries, in both protocol versions:
//! grpcurl speaks `v1`, Python's grpcio-reflection still speaks `v1alpha`.

use tonic_reflection::server::{Builder, Error};

/// The `v1` and `v1alpha` reflection services advertising `services`
/// (fully qualified names) and gRPC health.
pub fn services(
    services: &[&str],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    Error,
> {
    let builder = || {
        let mut builder = Builder::configure()
            .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for name in services {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}
