//! The engine end to end over loopback: `serve_with_listener` on an ephemeral port, the
//! generated tonic client, and the answers compared with the effects run directly.
//!
//! The mask codecs here are written from the proto's description (not `service::codec`),
//! so a codec bug cannot hide behind itself.

use ndarray::Array3;
use segkit::effects::auto_threshold::AutoThresholdMethod;
use segkit::effects::islands::{islands, IslandOperation, IslandsInput, IslandsParams};
use segkit::effects::threshold::{threshold, AutoThresholdMode, ThresholdParams};
use segkit::service::pb::{self, engine_client::EngineClient};
use segkit::service::{serve_with_listener, ServeConfig};
use segkit::volume::Geometry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Code;

/// Voxels along i, j, k.
const SIZE: [usize; 3] = [24, 20, 10];

/// An engine serving on 127.0.0.1:PORT until `stop`.
struct TestEngine {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), segkit::Error>>,
}

impl TestEngine {
    async fn start(token: Option<&str>) -> TestEngine {
        Self::start_with(|c| c.token = token.map(str::to_string)).await
    }

    /// An engine with 64 MiB of cache and the configuration `adjust` makes.
    async fn start_with(adjust: impl FnOnce(&mut ServeConfig)) -> TestEngine {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral loopback port");
        let addr = listener.local_addr().expect("bound address");
        let mut config = ServeConfig {
            cache_bytes: 64 << 20,
            ..ServeConfig::new(addr)
        };
        adjust(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(serve_with_listener(listener, config, async {
            let _ = rx.await;
        }));
        TestEngine {
            addr,
            shutdown: Some(tx),
            handle,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect to the engine")
    }

    async fn client(&self) -> EngineClient<Channel> {
        EngineClient::new(self.channel().await)
    }

    /// Signals shutdown and waits for the server to finish (at most 10 s).
    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let done = tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("the engine shuts down within 10 s");
        done.expect("the server task does not panic")
            .expect("the server stops without an error");
    }
}

/// A lattice whose direction is not diagonal: i -> -P, j -> L, k -> S.
fn geometry() -> Geometry {
    Geometry {
        origin: [-12.5, 40.0, 7.25],
        spacing: [0.5, 0.75, 2.0],
        direction: [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
    }
}

fn geometry_pb() -> pb::Geometry {
    let g = geometry();
    pb::Geometry {
        size: SIZE.iter().map(|&s| s as u32).collect(),
        origin: g.origin.to_vec(),
        spacing: g.spacing.to_vec(),
        direction: g.direction.iter().flatten().copied().collect(),
    }
}

/// A CT-like int16 volume `[k][j][i]`: blobs of "lung" (-800) in "tissue" (40) with
/// deterministic noise, so thresholds give several islands of different sizes.
fn ct() -> Array3<i16> {
    let [ni, nj, nk] = SIZE;
    let mut state: u32 = 12345;
    Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let noise = ((state >> 16) % 200) as i16 - 100;
        let left = (i as f64 - 6.0).powi(2) + (j as f64 - 9.0).powi(2) < 20.0 && k < 8;
        let right = (i as f64 - 17.0).powi(2) + (j as f64 - 10.0).powi(2) < 12.0 && k > 2;
        let speck = (i + 3 * j + 7 * k) % 53 == 0;
        if left || right || speck {
            -800 + noise
        } else {
            40 + noise
        }
    })
}

fn upload_messages(v: &Array3<i16>, chunk: usize) -> Vec<pb::UploadVolumeRequest> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut msgs = vec![pb::UploadVolumeRequest {
        part: Some(pb::upload_volume_request::Part::Header(pb::VolumeHeader {
            geometry: Some(geometry_pb()),
            scalar_type: pb::ScalarType::Int16 as i32,
            total_bytes: bytes.len() as u64,
            name: "ct".into(),
        })),
        offset: 0,
    }];
    for (n, c) in bytes.chunks(chunk).enumerate() {
        msgs.push(pb::UploadVolumeRequest {
            part: Some(pb::upload_volume_request::Part::Data(
                bytes::Bytes::copy_from_slice(c),
            )),
            offset: (n * chunk) as u64,
        });
    }
    msgs
}

async fn upload(client: &mut EngineClient<Channel>, v: &Array3<i16>, chunk: usize) -> String {
    client
        .upload_volume(tokio_stream::iter(upload_messages(v, chunk)))
        .await
        .expect("upload")
        .into_inner()
        .volume_id
}

// --- Masks as the proto describes them ---------------------------------------------------

fn decode_runs(data: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let (mut run, mut shift, mut value) = (0u64, 0u32, 0u8);
    for &b in data {
        run |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            out.extend(std::iter::repeat_n(value, run as usize));
            value ^= 1;
            (run, shift) = (0, 0);
        }
    }
    assert_eq!(shift, 0, "runs end inside a varint");
    assert_eq!(out.len(), n, "runs add up to the extent");
    out
}

fn encode_runs(bits: impl Iterator<Item = bool>) -> Vec<u8> {
    let mut runs = vec![0u64];
    let mut current = false;
    for b in bits {
        if b != current {
            runs.push(0);
            current = b;
        }
        *runs.last_mut().expect("one run") += 1;
    }
    let mut out = Vec::new();
    for mut r in runs {
        loop {
            let byte = (r & 0x7f) as u8;
            r >>= 7;
            if r == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

fn unpack_bits(data: &[u8], n: usize) -> Vec<u8> {
    assert_eq!(data.len(), n.div_ceil(8), "one bit per voxel");
    (0..n).map(|x| (data[x / 8] >> (x % 8)) & 1).collect()
}

/// A proto mask on the full lattice `[k][j][i]`.
fn decode(m: &pb::Mask) -> Array3<u8> {
    assert_eq!(m.geometry.as_ref(), Some(&geometry_pb()), "mask geometry");
    let [ni, nj, nk] = SIZE;
    let mut full = Array3::zeros((nk, nj, ni));
    let Some(e) = &m.extent else {
        assert!(m.data.is_empty(), "no extent, no data");
        return full;
    };
    let (ci, cj, ck) = (
        (e.i_max - e.i_min + 1) as usize,
        (e.j_max - e.j_min + 1) as usize,
        (e.k_max - e.k_min + 1) as usize,
    );
    let n = ci * cj * ck;
    let values = match pb::MaskEncoding::try_from(m.encoding) {
        Ok(pb::MaskEncoding::Bits) => unpack_bits(&m.data, n),
        Ok(pb::MaskEncoding::Runs) => decode_runs(&m.data, n),
        other => panic!("unexpected encoding {other:?}"),
    };
    for (x, v) in values.into_iter().enumerate() {
        let (i, j, k) = (x % ci, (x / ci) % cj, x / (ci * cj));
        full[[
            k + e.k_min as usize,
            j + e.j_min as usize,
            i + e.i_min as usize,
        ]] = v;
    }
    full
}

/// The whole lattice as the extent, RUNS-encoded.
fn encode(mask: &Array3<u8>) -> pb::Mask {
    let [ni, nj, nk] = SIZE;
    pb::Mask {
        geometry: Some(geometry_pb()),
        extent: Some(pb::Extent {
            i_min: 0,
            i_max: ni as u32 - 1,
            j_min: 0,
            j_max: nj as u32 - 1,
            k_min: 0,
            k_max: nk as u32 - 1,
        }),
        encoding: pb::MaskEncoding::Runs as i32,
        data: encode_runs(mask.iter().map(|&v| v != 0)).into(),
    }
}

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn only_modifier(r: &pb::ApplyEffectResponse, mode: pb::ModificationMode) -> Array3<u8> {
    assert_eq!(r.modifiers.len(), 1, "one modifier");
    let m = &r.modifiers[0];
    assert!(!m.new_segment);
    assert_eq!(m.mode, mode as i32);
    decode(m.mask.as_ref().expect("a mask"))
}

// --- Tests --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_and_islands_match_the_library() {
    let engine = TestEngine::start(None).await;
    let mut client = engine.client().await;
    let ct = ct();
    let id = upload(&mut client, &ct, 1000).await;
    // The same voxels in other chunks: the same id.
    assert_eq!(upload(&mut client, &ct, 4096).await, id);

    // Threshold, in both encodings, against the library.
    let direct = threshold(
        ct.view(),
        &ThresholdParams {
            minimum_threshold: -1000.0,
            maximum_threshold: -500.0,
            auto: None,
        },
    )
    .expect("threshold");
    let expected = &direct.modifiers[0].mask;
    assert!(expected.iter().any(|&v| v == 1) && expected.iter().any(|&v| v == 0));
    let mut lung = None;
    for encoding in [pb::MaskEncoding::Bits, pb::MaskEncoding::Runs] {
        let r = client
            .apply_effect(pb::ApplyEffectRequest {
                effect: "Threshold".into(),
                volume_id: id.clone(),
                parameters: params(&[("MinimumThreshold", "-1000"), ("MaximumThreshold", "-500")]),
                result_encoding: encoding as i32,
                ..Default::default()
            })
            .await
            .expect("threshold")
            .into_inner();
        assert_eq!(
            r.modifiers[0].mask.as_ref().unwrap().encoding,
            encoding as i32
        );
        let got = only_modifier(&r, pb::ModificationMode::Set);
        assert_eq!(&got, expected, "threshold in {encoding:?}");
        assert_eq!(r.reported.get("MinimumThreshold"), Some(&-1000.0));
        assert!(r.compute_seconds >= 0.0);
        lung = Some(got);
    }
    let lung = lung.unwrap();

    // Report only: the automatic bounds the library computes, and no mask.
    let auto = threshold(
        ct.view(),
        &ThresholdParams {
            minimum_threshold: 0.0,
            maximum_threshold: 0.0,
            auto: Some((AutoThresholdMethod::Otsu, AutoThresholdMode::SetLowerMax)),
        },
    )
    .expect("auto threshold");
    let r = client
        .apply_effect(pb::ApplyEffectRequest {
            effect: "Threshold".into(),
            volume_id: id.clone(),
            parameters: params(&[("AutoThreshold", "1"), ("AutoThresholdMethod", "OTSU")]),
            report_only: true,
            ..Default::default()
        })
        .await
        .expect("report only")
        .into_inner();
    let reported: HashMap<String, f64> = auto.reported.iter().cloned().collect();
    assert_eq!(r.reported, reported);
    assert!(reported["MinimumThreshold"] > -1000.0, "{reported:?}");
    assert!(r.modifiers.is_empty() && r.segments.is_empty() && r.volumes.is_empty());
    let info = client
        .list_effects(pb::ListEffectsRequest::default())
        .await
        .expect("list")
        .into_inner();
    let info = info.effects.iter().find(|e| e.name == "Threshold").unwrap();
    assert_eq!(
        (
            info.range_minimum_parameter.as_str(),
            info.range_maximum_parameter.as_str(),
            info.auto_range_parameter.as_str()
        ),
        ("MinimumThreshold", "MaximumThreshold", "AutoThreshold")
    );

    // Islands on the threshold result, against the library.
    for (op, min_size) in [
        (IslandOperation::KeepLargestIsland, 5u64),
        (IslandOperation::RemoveSmallIslands, 3),
    ] {
        let direct = islands(
            &IslandsInput::new(lung.view()),
            &IslandsParams {
                operation: op,
                minimum_size: min_size,
            },
        )
        .expect("islands");
        let r = client
            .apply_effect(pb::ApplyEffectRequest {
                effect: "islands".into(),
                volume_id: id.clone(),
                segments: vec![pb::SegmentMask {
                    id: "lung".into(),
                    name: "Lung".into(),
                    visible: true,
                    mask: Some(encode(&lung)),
                    ..Default::default()
                }],
                selected_segment_id: "lung".into(),
                parameters: params(&[
                    ("Operation", op.slicer_name()),
                    ("MinimumSize", &min_size.to_string()),
                ]),
                ..Default::default()
            })
            .await
            .expect("islands")
            .into_inner();
        let got = only_modifier(&r, pb::ModificationMode::Set);
        assert_eq!(got, direct.modifiers[0].mask, "{}", op.slicer_name());
        let reported: HashMap<String, f64> = direct.reported.iter().cloned().collect();
        assert_eq!(r.reported, reported);
        assert!(
            reported["islands"] >= 3.0,
            "a meaningful case: {reported:?}"
        );
    }

    // The streaming form: progress, then the same result.
    let mut stream = client
        .apply_effect_stream(pb::ApplyEffectRequest {
            effect: "Threshold".into(),
            volume_id: id.clone(),
            parameters: params(&[("MinimumThreshold", "-1000"), ("MaximumThreshold", "-500")]),
            ..Default::default()
        })
        .await
        .expect("stream")
        .into_inner();
    let mut events = Vec::new();
    while let Some(e) = stream.message().await.expect("event") {
        events.push(e.event.expect("an event"));
    }
    assert!(matches!(
        events.first(),
        Some(pb::apply_effect_event::Event::Progress(_))
    ));
    match events.last() {
        Some(pb::apply_effect_event::Event::Result(r)) => {
            assert_eq!(&only_modifier(r, pb::ModificationMode::Set), expected)
        }
        other => panic!("the last event is not the result: {other:?}"),
    }
    drop(client);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_volume_is_not_found() {
    let engine = TestEngine::start(None).await;
    let mut client = engine.client().await;
    let unknown = "0123456789abcdef0123456789abcdef".to_string();
    let e = client
        .get_volume(pb::GetVolumeRequest {
            volume_id: unknown.clone(),
        })
        .await
        .expect_err("unknown id");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = client
        .apply_effect(pb::ApplyEffectRequest {
            effect: "Threshold".into(),
            volume_id: unknown.clone(),
            ..Default::default()
        })
        .await
        .expect_err("unknown id");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = client
        .export(pb::ExportRequest {
            volume_id: unknown,
            format: pb::ExportFormat::LabelNrrd as i32,
            ..Default::default()
        })
        .await
        .expect_err("unknown id");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // Upload, and the id is then found.
    let id = upload(&mut client, &ct(), 1 << 20).await;
    let found = client
        .get_volume(pb::GetVolumeRequest {
            volume_id: id.clone(),
        })
        .await
        .expect("uploaded volume")
        .into_inner();
    assert_eq!(found.volume_id, id);
    assert_eq!(found.header.unwrap().geometry, Some(geometry_pb()));
    drop(client);
    engine.stop().await;
}

/// A segment on a lattice of `size` voxels (i, j, k) with an empty mask: a few bytes
/// that describe a huge array.
fn empty_segment_on(size: [u32; 3]) -> pb::SegmentMask {
    pb::SegmentMask {
        id: "big".into(),
        name: "big".into(),
        visible: true,
        mask: Some(pb::Mask {
            geometry: Some(pb::Geometry {
                size: size.to_vec(),
                ..geometry_pb()
            }),
            extent: None,
            encoding: pb::MaskEncoding::Runs as i32,
            data: Default::default(),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_working_memory_are_refused_before_allocating() {
    // 64 MiB of working memory; the requests describe 1 G voxels in a few bytes.
    let engine = TestEngine::start_with(|c| c.work_bytes = 64 << 20).await;
    let mut client = engine.client().await;
    let huge = [1024, 1024, 1024];
    let e = client
        .apply_effect(pb::ApplyEffectRequest {
            effect: "Islands".into(),
            segments: vec![empty_segment_on(huge)],
            selected_segment_id: "big".into(),
            ..Default::default()
        })
        .await
        .expect_err("1 G voxels x 18 bytes is above 64 MiB");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("--work-mb"), "{}", e.message());
    let e = client
        .export(pb::ExportRequest {
            format: pb::ExportFormat::LabelNrrd as i32,
            segments: vec![empty_segment_on(huge)],
            ..Default::default()
        })
        .await
        .expect_err("the export is refused too");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // A request within the budget still runs.
    let id = upload(&mut client, &ct(), 1 << 20).await;
    client
        .apply_effect(pb::ApplyEffectRequest {
            effect: "Threshold".into(),
            volume_id: id,
            parameters: params(&[("MinimumThreshold", "-1000"), ("MaximumThreshold", "-500")]),
            ..Default::default()
        })
        .await
        .expect("a small effect runs");
    drop(client);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_larger_than_the_cache_are_refused_from_their_header() {
    // A gzip NRRD declaring 1024^3 int16 voxels (2 GiB) in a few bytes: refused from the
    // header with the cache named, before any voxel is read or allocated.
    let dir = tempfile::tempdir().expect("temp folder");
    let path = dir.path().join("huge.nrrd");
    let mut bytes = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 1024 1024 1024\n\
        encoding: gzip\nendian: little\n\n"
        .to_vec();
    bytes.extend_from_slice(&[
        0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    std::fs::write(&path, bytes).unwrap();
    let engine = TestEngine::start(None).await;
    let mut client = engine.client().await;
    let e = client
        .open_volume(pb::OpenVolumeRequest {
            path: path.display().to_string(),
            ..Default::default()
        })
        .await
        .expect_err("2 GiB is above the 64 MiB cache");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("--cache-mb"), "{}", e.message());
    assert!(e.message().contains("huge.nrrd"), "{}", e.message());
    drop(client);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_the_roots_are_refused() {
    let top = tempfile::tempdir().expect("temp folder");
    let root = top.path().join("studies");
    let private = top.path().join("private");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&private).unwrap();
    let volume = segkit::volume::Volume::new(ct(), geometry());
    for dir in [&root, &private] {
        segkit::io::nrrd::write_volume(&dir.join("ct.nrrd"), &volume.clone().into())
            .expect("write a volume");
    }
    let roots = vec![root.clone()];
    let engine = TestEngine::start_with(move |c| c.roots = roots).await;
    let mut client = engine.client().await;
    let info = client
        .get_engine_info(pb::GetEngineInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(info.open_by_path);
    let open = |p: &std::path::Path| pb::OpenVolumeRequest {
        path: p.display().to_string(),
        ..Default::default()
    };
    let inside = client
        .open_volume(open(&root.join("ct.nrrd")))
        .await
        .expect("a file under the root opens")
        .into_inner();
    for outside in [
        private.join("ct.nrrd"),
        root.join("..").join("private").join("ct.nrrd"),
    ] {
        let e = client
            .open_volume(open(&outside))
            .await
            .expect_err("outside");
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    let export = |p: &std::path::Path| pb::ExportRequest {
        volume_id: inside.volume_id.clone(),
        format: pb::ExportFormat::LabelNrrd as i32,
        path: p.display().to_string(),
        ..Default::default()
    };
    let e = client
        .export(export(&private.join("out-label.nrrd")))
        .await
        .expect_err("no export outside the roots");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(!private.join("out-label.nrrd").exists());
    let mut stream = client
        .export(export(&root.join("out-label.nrrd")))
        .await
        .expect("an export under the root")
        .into_inner();
    while stream.message().await.expect("export stream").is_some() {}
    assert!(root.join("out-label.nrrd").is_file());
    drop(client);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_enforced() {
    let engine = TestEngine::start(Some("s3cret")).await;
    let channel = engine.channel().await;
    for given in [
        None,
        Some("Bearer wrong"),
        Some("s3cret"),
        Some("Bearer s3cret2"),
    ] {
        let mut client =
            EngineClient::with_interceptor(channel.clone(), move |mut req: tonic::Request<()>| {
                if let Some(v) = given {
                    req.metadata_mut()
                        .insert("authorization", v.parse().expect("ascii"));
                }
                Ok(req)
            });
        let e = client
            .get_engine_info(pb::GetEngineInfoRequest {})
            .await
            .expect_err("no or wrong token");
        assert_eq!(e.code(), Code::Unauthenticated, "{given:?}: {e:?}");
        let e = client
            .upload_volume(tokio_stream::iter(upload_messages(&ct(), 1 << 20)))
            .await
            .expect_err("no or wrong token");
        assert_eq!(e.code(), Code::Unauthenticated, "{given:?}: {e:?}");
    }
    let mut client =
        EngineClient::with_interceptor(channel.clone(), |mut req: tonic::Request<()>| {
            req.metadata_mut()
                .insert("authorization", "Bearer s3cret".parse().expect("ascii"));
            Ok(req)
        });
    let info = client
        .get_engine_info(pb::GetEngineInfoRequest {})
        .await
        .expect("the right token")
        .into_inner();
    assert_eq!(info.api_version, "segkit.v1");
    // Health stays open without a token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "segkit.v1.Engine".into(),
        })
        .await
        .expect("health without a token")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    drop(client);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_completes() {
    let engine = TestEngine::start(None).await;
    let addr = engine.addr;
    let mut client = engine.client().await;
    client
        .get_engine_info(pb::GetEngineInfoRequest {})
        .await
        .expect("serving");
    // A client still connected does not keep the engine from stopping.
    engine.stop().await;
    let e = client
        .get_engine_info(pb::GetEngineInfoRequest {})
        .await
        .expect_err("stopped");
    assert!(
        matches!(
            e.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ),
        "{e:?}"
    );
    // And the port is free: nothing listens there any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// An upload stream of little-endian `bytes` on a lattice of `size` voxels (i, j, k) with
/// the test geometry's origin, spacing and direction.
fn raw_upload_messages(
    size: [u32; 3],
    scalar: pb::ScalarType,
    bytes: &[u8],
    chunk: usize,
) -> Vec<pb::UploadVolumeRequest> {
    let mut geometry = geometry_pb();
    geometry.size = size.to_vec();
    let mut msgs = vec![pb::UploadVolumeRequest {
        part: Some(pb::upload_volume_request::Part::Header(pb::VolumeHeader {
            geometry: Some(geometry),
            scalar_type: scalar as i32,
            total_bytes: bytes.len() as u64,
            name: "raw".into(),
        })),
        offset: 0,
    }];
    for (n, c) in bytes.chunks(chunk).enumerate() {
        msgs.push(pb::UploadVolumeRequest {
            part: Some(pb::upload_volume_request::Part::Data(
                bytes::Bytes::copy_from_slice(c),
            )),
            offset: (n * chunk) as u64,
        });
    }
    msgs
}

/// DownloadVolume, checked as the proto describes it: the VolumeRef in the first message
/// only, then the bytes in order. Answers the ref, the bytes and the number of chunks.
async fn download(
    client: &mut EngineClient<Channel>,
    id: &str,
) -> Result<(pb::VolumeRef, Vec<u8>, usize), tonic::Status> {
    let mut stream = client
        .download_volume(pb::GetVolumeRequest {
            volume_id: id.to_string(),
        })
        .await?
        .into_inner();
    let mut volume = None;
    let mut data = Vec::new();
    let mut chunks = 0;
    while let Some(msg) = stream.message().await? {
        match (&volume, msg.volume) {
            (None, Some(v)) => volume = Some(v),
            (None, None) => panic!("the first message carries no VolumeRef"),
            (Some(_), Some(_)) => panic!("a VolumeRef after the first message"),
            (Some(_), None) => {}
        }
        if !msg.data.is_empty() {
            assert_eq!(msg.offset, data.len() as u64, "chunks in order");
            data.extend_from_slice(&msg.data);
            chunks += 1;
        }
    }
    Ok((volume.expect("a VolumeRef"), data, chunks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_gives_back_the_uploaded_volume() {
    let engine = TestEngine::start(None).await;
    let mut client = engine.client().await;

    // The CT: one chunk.
    let ct = ct();
    let id = upload(&mut client, &ct, 1000).await;
    let (vref, data, _) = download(&mut client, &id).await.expect("download");
    let expected: Vec<u8> = ct.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(vref.volume_id, id);
    let header = vref.header.expect("a header");
    assert_eq!(header.geometry, Some(geometry_pb()));
    assert_eq!(header.scalar_type, pb::ScalarType::Int16 as i32);
    assert_eq!(header.total_bytes, expected.len() as u64);
    assert_eq!(data, expected);
    assert_eq!(
        (vref.minimum_value, vref.maximum_value),
        (
            f64::from(*ct.iter().min().unwrap()),
            f64::from(*ct.iter().max().unwrap())
        )
    );

    // 2.5 MB of float32: several chunks, bytes unchanged (NaN payloads and signs included).
    let size = [160u32, 128, 32];
    let n = size.iter().map(|&s| s as usize).product::<usize>();
    let mut values: Vec<f32> = (0..n).map(|x| (x as f32 * 0.37).sin() * 1e3).collect();
    values[7] = f32::from_bits(0x7fc0_1234);
    values[8] = -0.0;
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    let big = client
        .upload_volume(tokio_stream::iter(raw_upload_messages(
            size,
            pb::ScalarType::Float32,
            &bytes,
            1 << 20,
        )))
        .await
        .expect("upload")
        .into_inner();
    let (vref, data, chunks) = download(&mut client, &big.volume_id)
        .await
        .expect("download");
    assert!(chunks > 1, "{chunks} chunk(s) for {} bytes", bytes.len());
    assert_eq!(
        vref.header.expect("a header").total_bytes,
        bytes.len() as u64
    );
    assert!(
        data == bytes,
        "the downloaded bytes differ from the uploaded ones"
    );

    // Unknown and empty ids.
    let e = download(&mut client, "0123456789abcdef0123456789abcdef")
        .await
        .expect_err("unknown id");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = download(&mut client, "").await.expect_err("no id");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    drop(client);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_go_away_mid_call_leave_the_engine_serving() {
    let engine = TestEngine::start(None).await;
    let mut client = engine.client().await;
    // A volume large enough that the effect is still running when the client leaves.
    let size = [256u32, 256, 96];
    let n = size.iter().map(|&s| s as usize).product::<usize>();
    let bytes: Vec<u8> = (0..n)
        .flat_map(|x| (((x * 2_654_435_761) >> 7) as i16 % 1000).to_le_bytes())
        .collect();
    let id = client
        .upload_volume(tokio_stream::iter(raw_upload_messages(
            size,
            pb::ScalarType::Int16,
            &bytes,
            4 << 20,
        )))
        .await
        .expect("upload")
        .into_inner()
        .volume_id;
    let request = || pb::ApplyEffectRequest {
        effect: "Threshold".into(),
        volume_id: id.clone(),
        parameters: params(&[("MinimumThreshold", "-200"), ("MaximumThreshold", "300")]),
        ..Default::default()
    };

    for _ in 0..5 {
        // A stream dropped after its first event.
        let mut stream = client
            .apply_effect_stream(request())
            .await
            .expect("stream")
            .into_inner();
        let first = stream.message().await.expect("an event").expect("one");
        assert!(matches!(
            first.event,
            Some(pb::apply_effect_event::Event::Progress(_))
        ));
        drop(stream);
        // A unary call given up before its answer.
        let mut other = client.clone();
        let gave_up =
            tokio::time::timeout(Duration::from_millis(1), other.apply_effect(request())).await;
        drop(gave_up);
    }

    // Still serving: information, and a whole stream with its result.
    let info = client
        .get_engine_info(pb::GetEngineInfoRequest {})
        .await
        .expect("serving")
        .into_inner();
    assert_eq!(info.api_version, "segkit.v1");
    let mut stream = client
        .apply_effect_stream(request())
        .await
        .expect("stream")
        .into_inner();
    let mut last = None;
    while let Some(e) = stream.message().await.expect("event") {
        last = e.event;
    }
    let Some(pb::apply_effect_event::Event::Result(r)) = last else {
        panic!("the stream did not end with its result: {last:?}");
    };
    assert_eq!(r.modifiers.len(), 1);
    drop(client);
    engine.stop().await;
}

// --- Preview sessions ------------------------------------------------------------------------

fn segment(id: &str, mask: &Array3<u8>) -> pb::SegmentMask {
    pb::SegmentMask {
        id: id.into(),
        name: id.into(),
        visible: true,
        mask: Some(encode(mask)),
        color: vec![],
        label_value: 0,
    }
}

fn count(mask: &Array3<u8>) -> usize {
    mask.iter().filter(|&&v| v != 0).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_sessions_update_from_edits_apply_and_cancel() {
    let engine = TestEngine::start(None).await;
    let mut client = engine.client().await;
    let volume_id = upload(&mut client, &ct(), 1 << 20).await;
    let [ni, nj, nk] = SIZE;
    let shape = (nk, nj, ni);
    let mut seed = Array3::<u8>::zeros(shape);
    seed[[4, 9, 6]] = 1;
    seed[[4, 9, 7]] = 1;
    let other = Array3::<u8>::zeros(shape);

    let effects = client
        .list_effects(pb::ListEffectsRequest {})
        .await
        .expect("list effects")
        .into_inner()
        .effects;
    let find = |name: &str| effects.iter().find(|e| e.name == name).expect(name);
    assert!(find("Fast Marching").preview);
    assert!(!find("Threshold").preview);

    let start = pb::StartPreviewRequest {
        effect: "fast-marching".into(),
        volume_id: volume_id.clone(),
        segments: vec![segment("lung", &seed), segment("other", &other)],
        selected_segment_id: "lung".into(),
        parameters: params(&[("PercentMax", "5")]),
        ..Default::default()
    };
    let first = client
        .start_preview(start.clone())
        .await
        .expect("start")
        .into_inner();
    let session_id = first.session_id.clone();
    assert!(!session_id.is_empty() && !first.empty);
    assert_eq!(
        first.segments.len(),
        1,
        "one input segment: the selected one"
    );
    assert_eq!(first.segments[0].id, "lung");
    let full = decode(first.segments[0].mask.as_ref().expect("mask"));
    assert!(count(&full) > 2 + 200, "5 % of 4800 voxels marched");
    assert_eq!(full[[4, 9, 6]], 1);
    let info = client
        .get_engine_info(pb::GetEngineInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.previews_open, 1);

    // ApplyEffect computes the same thing in one call.
    let once = client
        .apply_effect(pb::ApplyEffectRequest {
            effect: "Fast Marching".into(),
            volume_id: volume_id.clone(),
            segments: start.segments.clone(),
            selected_segment_id: "lung".into(),
            parameters: start.parameters.clone(),
            ..Default::default()
        })
        .await
        .expect("apply effect")
        .into_inner();
    assert_eq!(once.modifiers.len(), 1);
    assert_eq!(once.modifiers[0].target_segment_id, "lung");
    assert_eq!(decode(once.modifiers[0].mask.as_ref().expect("mask")), full);

    // Trimming: a parameter only.
    let half = client
        .update_preview(pb::UpdatePreviewRequest {
            session_id: session_id.clone(),
            edits: vec![],
            parameters: params(&[("SegmentVolume", "50")]),
        })
        .await
        .expect("trim")
        .into_inner();
    let half = decode(half.segments[0].mask.as_ref().expect("mask"));
    assert!(count(&half) < count(&full) && count(&half) > 2);
    assert!(half
        .iter()
        .zip(full.iter())
        .all(|(&h, &f)| h == 0 || f == 1));

    // A seed edit: only the added voxel is sent; the answer equals a fresh start on the
    // seeds as they are now.
    let mut added = Array3::<u8>::zeros(shape);
    added[[5, 10, 17]] = 1;
    let grown = client
        .update_preview(pb::UpdatePreviewRequest {
            session_id: session_id.clone(),
            edits: vec![pb::SeedEdit {
                segment_id: "lung".into(),
                added: Some(encode(&added)),
                removed: None,
            }],
            parameters: params(&[("SegmentVolume", "100")]),
        })
        .await
        .expect("update with an edit")
        .into_inner();
    let grown = decode(grown.segments[0].mask.as_ref().expect("mask"));
    assert_eq!(grown[[5, 10, 17]], 1);
    let mut both = seed.clone();
    both[[5, 10, 17]] = 1;
    let fresh = client
        .start_preview(pb::StartPreviewRequest {
            segments: vec![segment("lung", &both), segment("other", &other)],
            ..start.clone()
        })
        .await
        .expect("fresh start")
        .into_inner();
    assert_eq!(
        decode(fresh.segments[0].mask.as_ref().expect("mask")),
        grown
    );
    client
        .cancel_preview(pb::PreviewSessionRequest {
            session_id: fresh.session_id.clone(),
        })
        .await
        .expect("cancel");

    // A bad edit is refused and changes nothing.
    let err = client
        .update_preview(pb::UpdatePreviewRequest {
            session_id: session_id.clone(),
            edits: vec![pb::SeedEdit {
                segment_id: "nope".into(),
                added: Some(encode(&added)),
                removed: None,
            }],
            parameters: HashMap::new(),
        })
        .await
        .expect_err("unknown segment");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("nope"), "{}", err.message());

    // Apply: the last preview as a Set modifier of its segment; the session closes.
    let applied = client
        .apply_preview(pb::PreviewSessionRequest {
            session_id: session_id.clone(),
        })
        .await
        .expect("apply")
        .into_inner();
    assert_eq!(applied.modifiers.len(), 1);
    let m = &applied.modifiers[0];
    assert_eq!(m.target_segment_id, "lung");
    assert_eq!(m.mode, pb::ModificationMode::Set as i32);
    assert_eq!(decode(m.mask.as_ref().expect("mask")), grown);
    let gone = client
        .update_preview(pb::UpdatePreviewRequest {
            session_id: session_id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("applied sessions are closed");
    assert_eq!(gone.code(), Code::NotFound);
    // Cancelling a closed session is not an error.
    client
        .cancel_preview(pb::PreviewSessionRequest { session_id })
        .await
        .expect("cancel twice");

    // Effects without a preview, and an empty seed.
    let err = client
        .start_preview(pb::StartPreviewRequest {
            effect: "Threshold".into(),
            ..start.clone()
        })
        .await
        .expect_err("Threshold has no preview");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("no preview"), "{}", err.message());
    let empty = client
        .start_preview(pb::StartPreviewRequest {
            segments: vec![segment("lung", &other), segment("other", &other)],
            ..start.clone()
        })
        .await
        .expect("an empty seed is no error")
        .into_inner();
    assert!(empty.empty && empty.segments.is_empty());
    let nothing = client
        .apply_preview(pb::PreviewSessionRequest {
            session_id: empty.session_id,
        })
        .await
        .expect_err("nothing to apply");
    assert_eq!(nothing.code(), Code::FailedPrecondition);

    // At most 8 sessions: the least recently used goes first.
    let mut ids = Vec::new();
    for _ in 0..9 {
        ids.push(
            client
                .start_preview(start.clone())
                .await
                .expect("start")
                .into_inner()
                .session_id,
        );
    }
    let oldest = client
        .update_preview(pb::UpdatePreviewRequest {
            session_id: ids[0].clone(),
            ..Default::default()
        })
        .await
        .expect_err("closed to make room");
    assert_eq!(oldest.code(), Code::NotFound);
    client
        .update_preview(pb::UpdatePreviewRequest {
            session_id: ids[8].clone(),
            ..Default::default()
        })
        .await
        .expect("the newest is open");
    let info = client
        .get_engine_info(pb::GetEngineInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.previews_open, 8);
    engine.stop().await;
}
